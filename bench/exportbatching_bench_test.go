package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-istio/otelcol-istio/bench/workload"
)

// maxRequestBytes is the shipped OTLP_BACKEND_MAX_REQUEST_BYTES default.
const maxRequestBytes = 4 << 20

// exportSink records the uncompressed protobuf size of each export, the
// size a backend limits.
type exportSink struct {
	mu      sync.Mutex
	exports int
	spans   int
	bytes   int
	largest int
	over    int // exports over maxRequestBytes
}

func (s *exportSink) push(_ context.Context, td ptrace.Traces) error {
	size := (&ptrace.ProtoMarshaler{}).TracesSize(td)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exports++
	s.spans += td.SpanCount()
	s.bytes += size
	s.largest = max(s.largest, size)
	if size > maxRequestBytes {
		s.over++
	}
	return nil
}

// newBatchingExporter is exporterhelper's traces exporter with the
// shipped sending_queue batching (in memory here: the persistent queue
// costs the same whatever the batch sizer), sized by sizer.
func newBatchingExporter(b *testing.B, sizer exporterhelper.RequestSizerType, minSize, maxSize int64, sink *exportSink) component.Component {
	b.Helper()
	qcfg := exporterhelper.NewDefaultQueueConfig()
	qcfg.Sizer = exporterhelper.RequestSizerTypeItems
	qcfg.QueueSize = 1 << 30
	qcfg.NumConsumers = 4
	qcfg.BlockOnOverflow = true
	bcfg := exporterhelper.NewDefaultBatchConfig()
	bcfg.FlushTimeout = 200 * time.Millisecond
	bcfg.Sizer = sizer
	bcfg.MinSize = minSize
	bcfg.MaxSize = maxSize
	qcfg.Batch = configoptional.Some(bcfg)
	set := exportertest.NewNopSettings(exportertest.NopType)
	exp, err := exporterhelper.NewTraces(context.Background(), set, &struct{}{}, sink.push,
		exporterhelper.WithQueue(configoptional.Some(qcfg)))
	if err != nil {
		b.Fatal(err)
	}
	if err := exp.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		b.Fatal(err)
	}
	return exp
}

// BenchmarkExportBatching compares the exporter's batching sized in spans
// (the old shipped config: 1024 to 4096 spans) with batching sized in
// bytes (shipped: 512 KiB to OTLP_BACKEND_MAX_REQUEST_BYTES), on two
// inputs: Envoy exports (about 5 spans of about 1 KiB, from the mesh
// simulator) and SDK exports (512 spans with a 6 KB attribute each, 3 MB).
// Figures: cpu_ns/span (the process's CPU time, user and system, per span,
// to copy the request, enqueue, merge, split, size and hand it to the
// export function, GC included; the copy_only row is the copy alone, to
// subtract; CPU time rather than wall time, as the machine is shared), B/export and max_B/export (uncompressed export
// sizes), over_limit (exports over 4 MiB: a 4 MiB backend refuses them,
// and their spans are lost). Each request must be copied (the exporter
// takes it over), and copying inside the timed loop keeps b.N, and the
// run, short.
func BenchmarkExportBatching(b *testing.B) {
	envoy, err := workload.Flushes(workload.Renamed, 5000, 1)
	if err != nil {
		b.Fatal(err)
	}
	envoyReqs := make([]ptrace.Traces, 0, len(envoy))
	for _, f := range envoy {
		envoyReqs = append(envoyReqs, f.Traces)
	}
	sdk := make([]ptrace.Traces, 4)
	for i := range sdk {
		sdk[i] = sdkRequest(512, 6000)
	}
	for _, in := range []struct {
		name string
		reqs []ptrace.Traces
	}{{"envoy", envoyReqs}, {"sdk_512x6KB", sdk}} {
		b.Run(in.name+"/copy_only", func(b *testing.B) {
			spans := 0
			cpu := processCPU()
			for i := 0; i < b.N; i++ {
				for _, r := range in.reqs {
					c := ptrace.NewTraces()
					r.CopyTo(c)
					spans += c.SpanCount()
				}
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(spans), "cpu_ns/span")
		})
		for _, bt := range []struct {
			name             string
			sizer            exporterhelper.RequestSizerType
			minSize, maxSize int64
		}{
			{"spans_1024-4096", exporterhelper.RequestSizerTypeItems, 1024, 4096},
			{"bytes_512KiB-4MiB", exporterhelper.RequestSizerTypeBytes, 512 << 10, maxRequestBytes},
		} {
			b.Run(in.name+"/"+bt.name, func(b *testing.B) {
				sink := &exportSink{}
				exp := newBatchingExporter(b, bt.sizer, bt.minSize, bt.maxSize, sink)
				te := exp.(interface {
					ConsumeTraces(context.Context, ptrace.Traces) error
				})
				spans := 0
				b.ResetTimer()
				cpu := processCPU()
				for i := 0; i < b.N; i++ {
					for _, r := range in.reqs {
						c := ptrace.NewTraces()
						r.CopyTo(c)
						spans += c.SpanCount()
						if err := te.ConsumeTraces(context.Background(), c); err != nil {
							b.Fatal(err)
						}
					}
				}
				// Shutdown flushes and waits for every export: part of the cost.
				if err := exp.Shutdown(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu = processCPU() - cpu
				if sink.spans != spans {
					b.Fatalf("exported %d spans of %d", sink.spans, spans)
				}
				b.ReportMetric(float64(cpu)/float64(spans), "cpu_ns/span")
				b.ReportMetric(float64(sink.bytes)/float64(sink.exports), "B/export")
				b.ReportMetric(float64(sink.largest), "max_B/export")
				b.ReportMetric(float64(sink.spans)/float64(sink.exports), "spans/export")
				b.ReportMetric(float64(sink.over), "over_limit")
			})
		}
	}
}

// processCPU is the CPU time this process has used, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// sdkRequest is what an SDK-instrumented application sends: n spans with a
// payload-byte attribute (SQL text, a stack trace).
func sdkRequest(n, payload int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "sdk-app")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	value := strings.Repeat("q", payload)
	for i := range n {
		s := spans.AppendEmpty()
		s.SetName(fmt.Sprintf("SELECT %d", i))
		s.SetSpanID([8]byte{byte(i), byte(i >> 8), 1})
		s.SetTraceID([16]byte{byte(i), byte(i >> 8), 1})
		s.Attributes().PutStr("db.query.text", value)
	}
	return td
}
