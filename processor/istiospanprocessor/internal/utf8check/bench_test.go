package utf8check

import (
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// BenchmarkTraces measures the check on the Istio-shaped fixtures (every
// Istio input mode, gateways, app SDK spans), all valid: the cost every
// batch pays.
func BenchmarkTraces(b *testing.B) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "testdata", "input", "*.json"))
	if err != nil || len(paths) == 0 {
		b.Fatalf("no fixtures: %v", err)
	}
	td := ptrace.NewTraces()
	for range 10 {
		for _, p := range paths {
			raw, err := os.ReadFile(p)
			if err != nil {
				b.Fatal(err)
			}
			in, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(raw)
			if err != nil {
				b.Fatal(err)
			}
			in.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
		}
	}
	spans := float64(td.SpanCount())
	b.ReportAllocs()
	for b.Loop() {
		if err := Traces(td); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(float64(b.N)*spans), "ns/span")
}
