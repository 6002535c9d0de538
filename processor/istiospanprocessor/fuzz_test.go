package istiospanprocessor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/utf8check"
)

// Native Go fuzz targets for istio_span on arbitrary span data: whatever a
// sender's bytes decode to, the processor must not panic, and must either
// pass every span on (it renames and annotates, never drops) or refuse the
// whole batch for invalid UTF-8 and pass nothing on. Whether it refuses
// exactly when it should is internal/utf8check's FuzzTraces. The seed
// corpus is the Istio-shaped fixtures in testdata/input. `make test` runs
// each target briefly; `make fuzz` runs them longer.

var fuzzFormats = []Format{
	FormatAppLabelAndNamespace,
	FormatCanonicalNameOnly,
	FormatCanonicalNameAndNamespace,
	FormatPreserve,
}

// fuzzSeeds returns the fixtures' OTLP/JSON bytes.
func fuzzSeeds(f *testing.F) [][]byte {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "input", "*.json"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed fixtures: %v", err)
	}
	var seeds [][]byte
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, raw)
	}
	return seeds
}

// FuzzProcessProto: bytes → ptrace.ProtoUnmarshaler → process, as the OTLP
// receivers decode protobuf from the wire.
func FuzzProcessProto(f *testing.F) {
	for i, raw := range fuzzSeeds(f) {
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(raw)
		if err != nil {
			f.Fatal(err)
		}
		b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, format uint8) {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(data)
		if err != nil {
			return
		}
		processAll(t, td, fuzzFormats[int(format)%len(fuzzFormats)])
	})
}

// FuzzProcessJSON: bytes → ptrace.JSONUnmarshaler → process, as OTLP/HTTP
// JSON arrives.
func FuzzProcessJSON(f *testing.F) {
	for i, raw := range fuzzSeeds(f) {
		f.Add(raw, uint8(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, format uint8) {
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(data)
		if err != nil {
			return
		}
		processAll(t, td, fuzzFormats[int(format)%len(fuzzFormats)])
	})
}

// processAll runs td through a started processor and checks that every span
// came out, each exactly once.
func processAll(t *testing.T, td ptrace.Traces, format Format) {
	t.Helper()
	want := spanIDCounts(td)
	wantCount := td.SpanCount()
	cfg := createDefaultConfig().(*Config)
	cfg.ServiceName.Format = format
	sink := new(consumertest.TracesSink)
	p := startedProc(t, processortest.NewNopSettings(metadata.Type), cfg, sink)
	if err := p.ConsumeTraces(context.Background(), td); err != nil {
		var bad *utf8check.Error
		if !errors.As(err, &bad) || !consumererror.IsPermanent(err) {
			t.Fatalf("processor failed on decodable input: %v", err)
		}
		if n := sink.SpanCount(); n != 0 {
			t.Fatalf("refused the batch (%v) but passed on %d spans", err, n)
		}
		return
	}
	got := map[[8]byte]int{}
	gotCount := 0
	for _, out := range sink.AllTraces() {
		gotCount += out.SpanCount()
		for id, n := range spanIDCounts(out) {
			got[id] += n
		}
	}
	if gotCount != wantCount {
		t.Fatalf("processor passed on %d spans, got %d", gotCount, wantCount)
	}
	for id, n := range want {
		if got[id] != n {
			t.Fatalf("span %x: %d in, %d out", id, n, got[id])
		}
	}
}

func spanIDCounts(td ptrace.Traces) map[[8]byte]int {
	m := map[[8]byte]int{}
	forEachSpanIn(td, func(s ptrace.Span) { m[s.SpanID()]++ })
	return m
}
