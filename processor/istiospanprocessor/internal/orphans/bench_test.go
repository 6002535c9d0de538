package orphans

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// benchBatch builds a realistic batch of about 1000 spans: copies of the five
// Bookinfo fixtures (healthy, orphaned, orphaned with x-request-id
// continuity, spawned gateway, legacy names) plus application SDK spans,
// every copy with its own trace, span and request ids so the index sees
// fresh request ids as in production.
type benchSource struct {
	templates []ptrace.Traces
	spans     int
}

func newBenchSource(b *testing.B) *benchSource {
	src := &benchSource{}
	for _, fx := range []string{fxPropagated, fxNoPropagate, fxForwardsXRID, fxSpawn, fxLegacy} {
		td := readTraces(b, fx)
		src.templates = append(src.templates, td)
		src.spans += td.SpanCount()
	}
	return src
}

const benchCopies = 24 // 24 × (37 fixture spans + 3 SDK spans) = 960 spans

func (src *benchSource) batch(n uint64) ptrace.Traces {
	out := ptrace.NewTraces()
	for c := range uint64(benchCopies) {
		salt := n*benchCopies + c + 1
		for _, tpl := range src.templates {
			tpl.ResourceSpans().CopyTo(scratchRS)
			for i := 0; i < scratchRS.Len(); i++ {
				rekey(scratchRS.At(i), salt)
			}
			scratchRS.MoveAndAppendTo(out.ResourceSpans())
		}
		// An application's own spans (SDK), which the detector must skip.
		rs := out.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "productpage")
		spans := rs.ScopeSpans().AppendEmpty().Spans()
		for k := range 3 {
			s := spans.AppendEmpty()
			s.SetTraceID(pcommon.TraceID{byte(k), 1, 2, 3, 4, 5, 6, 7, byte(salt), byte(salt >> 8), byte(salt >> 16)})
			s.SetSpanID(pcommon.SpanID{byte(k + 1), byte(salt), byte(salt >> 8), byte(salt >> 16)})
			s.SetKind(ptrace.SpanKindClient)
			s.SetName("GET /reviews")
			s.Attributes().PutStr("http.request.method", "GET")
		}
	}
	return out
}

var scratchRS = ptrace.NewResourceSpansSlice()

// rekey makes every id of a fixture copy unique: trace and span ids get the
// salt mixed in (parent links stay consistent), request ids a suffix.
func rekey(rs ptrace.ResourceSpans, salt uint64) {
	sss := rs.ScopeSpans()
	for i := 0; i < sss.Len(); i++ {
		spans := sss.At(i).Spans()
		for j := 0; j < spans.Len(); j++ {
			s := spans.At(j)
			t := s.TraceID()
			binary.LittleEndian.PutUint64(t[8:], binary.LittleEndian.Uint64(t[8:])^salt)
			s.SetTraceID(t)
			s.SetSpanID(saltSpan(s.SpanID(), salt))
			if !s.ParentSpanID().IsEmpty() {
				s.SetParentSpanID(saltSpan(s.ParentSpanID(), salt))
			}
			if v, ok := s.Attributes().Get("guid:x-request-id"); ok {
				v.SetStr(fmt.Sprintf("%s-%d", v.Str(), salt))
			}
		}
	}
}

func saltSpan(id pcommon.SpanID, salt uint64) pcommon.SpanID {
	binary.LittleEndian.PutUint64(id[:], binary.LittleEndian.Uint64(id[:])^(salt<<20))
	return id
}

// BenchmarkProcess reports ns/span and allocs/span for one goroutine on
// fresh batches with new request ids (the index insert path), decoded from
// OTLP protobuf just before processing, as the receiver hands them over.
// Building and decoding run with the timer stopped; the garbage collection
// the detector's own allocations cause is measured.
func BenchmarkProcess(b *testing.B) {
	src := newBenchSource(b)
	d, _ := newTestDetector(b, DefaultConfig())
	d.now = time.Now
	const pool = 16
	encoded := make([][]byte, pool)
	spansPerBatch := src.batch(0).SpanCount()
	var mallocs uint64
	var ms runtime.MemStats
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if i%pool == 0 {
			for k := range encoded {
				var err error
				encoded[k], err = (&ptrace.ProtoMarshaler{}).MarshalTraces(src.batch(uint64(i + k)))
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(encoded[i%pool])
		if err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		b.StartTimer()

		d.Process(td)

		b.StopTimer()
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - before
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N) * float64(spansPerBatch)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/span")
	b.ReportMetric(float64(mallocs)/n, "allocs/span")
	b.ReportMetric(float64(spansPerBatch), "spans/batch")
}

// BenchmarkProcessWarmHealthy is the floor: one small healthy batch,
// already in cache, processed again and again (the look-up path).
func BenchmarkProcessWarmHealthy(b *testing.B) {
	d, _ := newTestDetector(b, DefaultConfig())
	td := readTraces(b, fxPropagated)
	n := td.SpanCount()
	for b.Loop() {
		d.Process(td)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/span")
}

// BenchmarkProcessParallel runs batches from all Ps at once, as the OTLP
// receiver does, to show the cost of the shared index lock. The batch pool
// is reused, so after its first pass this measures the look-up path
// (re-processing is idempotent); BenchmarkProcess measures the insert path.
func BenchmarkProcessParallel(b *testing.B) {
	src := newBenchSource(b)
	d, _ := newTestDetector(b, DefaultConfig())
	d.now = time.Now
	const pool = 64
	batches := make([]ptrace.Traces, pool)
	for k := range batches {
		batches[k] = src.batch(uint64(k))
	}
	spansPerBatch := batches[0].SpanCount()
	var next atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.Process(batches[next.Add(1)%pool])
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(float64(b.N)*float64(spansPerBatch)), "ns/span")
}

// BenchmarkIndexMemory fills the request-id index to the default
// max_tracked and reports the heap it holds. Entries have a fixed size, so
// the figure does not depend on how many spans share a request id.
func BenchmarkIndexMemory(b *testing.B) {
	var bytes float64
	for b.Loop() {
		bytes = float64(fillIndex(DefaultMaxTracked, maxRecordsPerRequestID))
	}
	b.ReportMetric(bytes/(1<<20), "MiB")
	b.ReportMetric(bytes/DefaultMaxTracked, "B/request_id")
}

// fillIndex returns the live heap an index with maxTracked full entries holds.
func fillIndex(maxTracked, records int) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ix := newRequestIndex(int64(time.Hour), maxTracked)
	for i := range maxTracked {
		key := requestKey(uint64(i) * 0x9E3779B97F4A7C15)
		e := ix.get(key, int64(i))
		for r := range records {
			e.upsert(record{traceID: pcommon.TraceID{byte(r), byte(i), byte(i >> 8), byte(i >> 16)}, spanID: pcommon.SpanID{byte(r)}, kind: serverRecord})
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ix)
	return after.HeapAlloc - before.HeapAlloc
}
