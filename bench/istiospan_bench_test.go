// Package bench holds the istio_span micro benchmarks and, in
// cmd/collectorbench, the end-to-end benchmark of the built collector. See
// README.md for how to run them and read the figures.
package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otelcol-istio/otelcol-istio/bench/workload"
	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor"
)

const batchSpans = 1000

// newProcessor starts istio_span with its default config, overlaid with
// overrides (a config map as in the collector YAML).
func newProcessor(tb testing.TB, overrides map[string]any) (processor.Traces, *istiospanprocessor.Config) {
	tb.Helper()
	f := istiospanprocessor.NewFactory()
	cfg := f.CreateDefaultConfig().(*istiospanprocessor.Config)
	if overrides != nil {
		if err := confmap.NewFromStringMap(overrides).Unmarshal(cfg); err != nil {
			tb.Fatal(err)
		}
	}
	ctx := context.Background()
	p, err := f.CreateTraces(ctx, processortest.NewNopSettings(f.Type()), cfg, consumertest.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.Start(ctx, componenttest.NewNopHost()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Shutdown(ctx) })
	return p, cfg
}

// measure runs consume on fresh copies of the batches (copying is not
// timed or counted) and reports time, bytes and allocations per span, as
// well as per resource (istio_span's work is per resource when it can be).
func measure(b *testing.B, p processor.Traces, src []ptrace.Traces) {
	ctx := context.Background()
	spans, resources := 0, 0
	for _, td := range src {
		spans += td.SpanCount()
		resources += td.ResourceSpans().Len()
	}
	var (
		ms             runtime.MemStats
		mallocs, bytes uint64
		batches        []ptrace.Traces // this iteration's copies
		baseM, baseB   uint64
	)
	window := func(open bool) {
		runtime.ReadMemStats(&ms)
		if open {
			baseM, baseB = ms.Mallocs, ms.TotalAlloc
		} else {
			mallocs += ms.Mallocs - baseM
			bytes += ms.TotalAlloc - baseB
		}
	}
	b.ReportAllocs()
	started := false
	for b.Loop() {
		b.StopTimer()
		if started {
			window(false)
		}
		// Copied just before use: hot in cache, as fresh from the receiver.
		batches = make([]ptrace.Traces, len(src))
		for i, td := range src {
			batches[i] = ptrace.NewTraces()
			td.CopyTo(batches[i])
		}
		window(true)
		started = true
		b.StartTimer()
		for _, td := range batches {
			if err := p.ConsumeTraces(ctx, td); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	window(false)
	n := float64(b.N)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(n*float64(spans)), "ns/span")
	b.ReportMetric(float64(bytes)/(n*float64(spans)), "B/span")
	b.ReportMetric(float64(mallocs)/(n*float64(spans)), "allocs/span")
	b.ReportMetric(float64(mallocs)/(n*float64(resources)), "allocs/resource")
}

// BenchmarkIstioSpan measures the processor (processorhelper included) on
// batches of 1000 simulated Bookinfo spans with the default config, which
// includes every step: the UTF-8 check, normalisation, and orphans with
// re-linking by x-request-id.
//
//   - mixed: 40% renamed, 30% already normalised, 20% orphan traffic,
//     10% non-Istio, one resource per proxy export, in one call.
//   - mixed_per_export: the same spans, one call per proxy export (about 5
//     spans), which is what istio_span sees in our pipeline, where it runs
//     before the batch processor.
//   - renamed, normalised, orphans, non_istio: 1000 spans of one kind.
//   - left_alone: the mixed batch after it went through the processor once,
//     fed again: nothing is left to change.
//   - mixed_per_export_hot: mixed_per_export with each export decoded just
//     before its call, as from the receiver.
//   - floor_read_every_string, mixed_steps/*: where the time goes.
func BenchmarkIstioSpan(b *testing.B) {
	mixed, err := workload.Mixed(batchSpans, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("mixed", func(b *testing.B) {
		p, _ := newProcessor(b, nil)
		measure(b, p, []ptrace.Traces{mixed})
	})
	// The same with invalid_utf8: forward: the difference to mixed is what
	// step 0's UTF-8 check costs.
	b.Run("mixed_utf8_forward", func(b *testing.B) {
		p, _ := newProcessor(b, map[string]any{"invalid_utf8": "forward"})
		measure(b, p, []ptrace.Traces{mixed})
	})
	var exports []ptrace.Traces
	for i := 0; i < mixed.ResourceSpans().Len(); i++ {
		td := ptrace.NewTraces()
		mixed.ResourceSpans().At(i).CopyTo(td.ResourceSpans().AppendEmpty())
		exports = append(exports, td)
	}
	b.Run("mixed_per_export", func(b *testing.B) {
		p, _ := newProcessor(b, nil)
		measure(b, p, exports)
	})
	// Per export, each request is small enough to stay in cache between
	// the check and the other steps: the check's cost as deployed.
	b.Run("mixed_per_export_utf8_forward", func(b *testing.B) {
		p, _ := newProcessor(b, map[string]any{"invalid_utf8": "forward"})
		measure(b, p, exports)
	})
	// As deployed: each export decoded from OTLP protobuf, as the receiver
	// does, just before its call, so its ~5 spans are in cache as they are
	// when istio_span gets them. mixed_per_export copies all ~180 exports
	// first, so each call starts on spans that left the L2 cache.
	wire := make([][]byte, len(exports))
	for i, td := range exports {
		if wire[i], err = (&ptrace.ProtoMarshaler{}).MarshalTraces(td); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("mixed_per_export_hot", func(b *testing.B) {
		p, _ := newProcessor(b, nil)
		measureDecoded(b, p, wire)
	})
	// The floor of the UTF-8 check, in the same harness: the first byte of
	// every attribute key and string value and of span and scope names,
	// nothing else, which is the least any pass over every string pays. The
	// check is this read plus the rest of each string.
	b.Run("floor_read_every_string", func(b *testing.B) {
		measure(b, readEveryString{}, []ptrace.Traces{mixed})
	})
	// What each step adds, on the mixed batch without the UTF-8 check:
	// each sub-benchmark turns on one more step than the one before; the
	// last is mixed_utf8_forward. 1_identity reads every span's Istio
	// identity and changes nothing (format preserve, no semconv).
	steps := []struct {
		name      string
		overrides map[string]any
	}{
		{"1_identity", map[string]any{"service_name": map[string]any{"format": "preserve", "semconv_attributes": false},
			"orphans": map[string]any{"enabled": false}}},
		{"2_rename", map[string]any{"service_name": map[string]any{"semconv_attributes": false},
			"orphans": map[string]any{"enabled": false}}},
		{"3_semconv", map[string]any{"orphans": map[string]any{"enabled": false}}},
		{"4_orphan_flags", map[string]any{"orphans": map[string]any{"link_by_request_id": false}}},
		{"5_relink", map[string]any{}},
	}
	for _, st := range steps {
		b.Run("mixed_steps/"+st.name, func(b *testing.B) {
			st.overrides["invalid_utf8"] = "forward"
			p, _ := newProcessor(b, st.overrides)
			measure(b, p, []ptrace.Traces{mixed})
		})
	}
	for _, m := range workload.Mix {
		b.Run(string(m.Kind), func(b *testing.B) {
			td, err := workload.Batch(m.Kind, batchSpans, 2)
			if err != nil {
				b.Fatal(err)
			}
			p, _ := newProcessor(b, nil)
			measure(b, p, []ptrace.Traces{td})
		})
	}
	// Envoy with min_flush_spans 50: ten times the spans per resource. If
	// renaming allocates per resource and never per span, allocs/span drops
	// about tenfold while allocs/resource stays put.
	b.Run("renamed_50_per_resource", func(b *testing.B) {
		cfg := workload.Config(workload.Renamed, 4)
		cfg.MinFlushSpans = 50
		td, err := workload.BatchFrom(cfg, batchSpans)
		if err != nil {
			b.Fatal(err)
		}
		p, _ := newProcessor(b, nil)
		measure(b, p, []ptrace.Traces{td})
	})
	b.Run("left_alone", func(b *testing.B) {
		p, _ := newProcessor(b, nil)
		td := ptrace.NewTraces()
		mixed.CopyTo(td)
		ctx := context.Background()
		if err := p.ConsumeTraces(ctx, td); err != nil {
			b.Fatal(err)
		}
		spans := float64(td.SpanCount())
		var before, after runtime.MemStats
		b.ReportAllocs()
		runtime.ReadMemStats(&before)
		for b.Loop() {
			if err := p.ConsumeTraces(ctx, td); err != nil {
				b.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		n := float64(b.N)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(n*spans), "ns/span")
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/(n*spans), "B/span")
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/(n*spans), "allocs/span")
	})
}

// measureDecoded is measure for exports that arrive as OTLP protobuf, as
// from the receiver. Each iteration decodes every export twice: once alone,
// then each followed at once by its call, while its spans are in cache. The
// difference of the two passes is p's cost (ns/span); decode_ns/span is the
// decoding's, for scale. Timing a single ~5-span call with StopTimer and
// StartTimer would not do: each stops the world (ReadMemStats).
func measureDecoded(b *testing.B, p processor.Traces, wire [][]byte) {
	ctx := context.Background()
	decode := func(raw []byte) ptrace.Traces {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(raw)
		if err != nil {
			b.Fatal(err)
		}
		return td
	}
	spans := 0
	for _, raw := range wire {
		spans += decode(raw).SpanCount()
	}
	var decoding, both time.Duration
	for b.Loop() {
		start := time.Now()
		for _, raw := range wire {
			decodeSink = decode(raw)
		}
		mid := time.Now()
		for _, raw := range wire {
			if err := p.ConsumeTraces(ctx, decode(raw)); err != nil {
				b.Fatal(err)
			}
		}
		decoding += mid.Sub(start)
		both += time.Since(mid)
	}
	n := float64(b.N) * float64(spans)
	b.ReportMetric(float64((both-decoding).Nanoseconds())/n, "ns/span")
	b.ReportMetric(float64(decoding.Nanoseconds())/n, "decode_ns/span")
}

var decodeSink ptrace.Traces

// readEveryString is a processor that reads the first byte of every string
// istio_span's UTF-8 check reads in full: a floor for any pass over a
// span's attributes, paid in cache misses on a batch that is not in cache.
type readEveryString struct{}

var readSink byte

func (readEveryString) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	var acc byte
	first := func(s string) {
		if s != "" {
			acc ^= s[0]
		}
	}
	attrs := func(m pcommon.Map) {
		for k, v := range m.All() {
			first(k)
			if v.Type() == pcommon.ValueTypeStr {
				first(v.Str())
			}
		}
	}
	for _, rs := range td.ResourceSpans().All() {
		attrs(rs.Resource().Attributes())
		for _, ss := range rs.ScopeSpans().All() {
			first(ss.Scope().Name())
			attrs(ss.Scope().Attributes())
			for _, s := range ss.Spans().All() {
				first(s.Name())
				attrs(s.Attributes())
			}
		}
	}
	readSink ^= acc
	return nil
}

func (readEveryString) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (readEveryString) Start(context.Context, component.Host) error { return nil }

func (readEveryString) Shutdown(context.Context) error { return nil }

// BenchmarkRelinkIndexMemory fills the orphan step's x-request-id index to
// its default bound (orphans.max_tracked) with orphan traffic, through the
// processor's public interface, and reports the heap it holds after GC.
func BenchmarkRelinkIndexMemory(b *testing.B) {
	for range b.N {
		p, cfg := newProcessor(b, map[string]any{"orphans": map[string]any{
			"enabled": true, "link_by_request_id": true, "window": "1h",
		}})
		maxTracked := cfg.Orphans.MaxTracked
		base := heapAfterGC()
		// One x-request-id per page load: fill the index 1.2 times over so it
		// is at its bound and evicting.
		fed, err := feedRequests(p, int(1.2*float64(maxTracked)))
		if err != nil {
			b.Fatal(err)
		}
		held := heapAfterGC() - base
		runtime.KeepAlive(p)
		b.ReportMetric(float64(held)/(1<<20), "MiB")
		b.ReportMetric(float64(held)/float64(maxTracked), "B/request_id")
		b.ReportMetric(float64(maxTracked), "max_tracked")
		b.ReportMetric(float64(fed), "spans_fed")
	}
}

// feedRequests sends page loads with orphans, one proxy export per call.
func feedRequests(p processor.Traces, requests int) (int, error) {
	ctx := context.Background()
	fed := 0
	for chunk := 0; requests > 0; chunk++ {
		n := min(requests, 10000)
		flushes, err := workload.Flushes(workload.Orphans, n*8, uint64(100+chunk))
		if err != nil {
			return fed, err
		}
		for _, f := range flushes {
			fed += f.Traces.SpanCount()
			if err := p.ConsumeTraces(ctx, f.Traces); err != nil {
				return fed, fmt.Errorf("consume: %w", err)
			}
		}
		requests -= n
	}
	return fed, nil
}

func heapAfterGC() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
