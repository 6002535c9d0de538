package utf8check

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// BenchmarkTraces measures the check on the Istio-shaped fixtures (every
// Istio input mode, gateways, app SDK spans), all valid: the cost every
// batch pays.
func BenchmarkTraces(b *testing.B) {
	fixtures := fixtureBytes(b)
	td := ptrace.NewTraces()
	for range 10 {
		for _, raw := range fixtures {
			in, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(raw)
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
