package istiospanprocessor

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
)

// BenchmarkOrphansStep runs the whole processor on the realistic, already
// normalised batch with step 2 off and on, alternating, so the difference
// is step 2's cost measured under the same machine load.
func BenchmarkOrphansStep(b *testing.B) {
	src := realisticBatch(b, 10)
	spans := float64(src.SpanCount())
	for _, on := range []bool{false, true} {
		name := "orphans-off"
		if on {
			name = "orphans-on"
		}
		b.Run(name, func(b *testing.B) {
			cfg := createDefaultConfig().(*Config)
			cfg.Orphans.Enabled = on
			p := startedProc(b, processortest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
			ctx := b.Context()
			td := ptrace.NewTraces()
			src.CopyTo(td)
			require.NoError(b, p.ConsumeTraces(ctx, td))
			b.ReportAllocs()
			for b.Loop() {
				require.NoError(b, p.ConsumeTraces(ctx, td))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(float64(b.N)*spans), "ns/span")
		})
	}
}
