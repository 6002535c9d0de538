package istiospanprocessor

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
)

// realisticBatch concatenates the Bookinfo fixtures (every input mode, both
// gateway shapes, pre-1.23 names, app SDK spans) copies times: about 60 spans
// in 40 resources per copy, one resource per proxy flush as Envoy sends them.
func realisticBatch(b *testing.B, copies int) ptrace.Traces {
	b.Helper()
	td := ptrace.NewTraces()
	for range copies {
		for _, in := range []string{
			"01-bookinfo-propagated-app-label-ns-istio125.json",
			"02-bookinfo-productpage-no-propagation-istio125.json",
			"04-bookinfo-gateway-spawn-upstream-span-istio129.json",
			"08-bookinfo-legacy-span-names-istio122.json",
			"10-bookinfo-canonical-name-only-istio125.json",
			"11-bookinfo-otel-semantic-conventions.json",
			"12-bookinfo-otel-resource-attributes-override-istio125.json",
			"13-bookinfo-mixed-modes-upgrade.json",
		} {
			readInput(b, in).ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
		}
	}
	return td
}

// BenchmarkProcess measures the whole processor (processorhelper included)
// on a realistic batch. "fresh" batches need renames and semconv attributes;
// "normalised" batches have been through the processor once, which is the
// steady state for spans that are already right. Each runs with the default
// invalid_utf8: reject and with forward, which skips the UTF-8 check, so the
// difference is the check's cost.
func BenchmarkProcess(b *testing.B) {
	for _, action := range []InvalidUTF8Action{InvalidUTF8Reject, InvalidUTF8Forward} {
		b.Run("invalid_utf8="+string(action), func(b *testing.B) {
			cfg := createDefaultConfig().(*Config)
			cfg.InvalidUTF8 = action
			benchmarkProcess(b, cfg)
		})
	}
}

func benchmarkProcess(b *testing.B, cfg *Config) {
	newProc := func(b *testing.B) func(ptrace.Traces) {
		p := startedProc(b, processortest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
		ctx := b.Context()
		return func(td ptrace.Traces) { require.NoError(b, p.ConsumeTraces(ctx, td)) }
	}
	const copies = 10
	src := realisticBatch(b, copies)
	spans := float64(src.SpanCount())

	b.Run("normalised", func(b *testing.B) {
		consume := newProc(b)
		td := ptrace.NewTraces()
		src.CopyTo(td)
		consume(td)
		b.ReportAllocs()
		for b.Loop() {
			consume(td)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(float64(b.N)*spans), "ns/span")
	})
	b.Run("fresh", func(b *testing.B) {
		consume := newProc(b)
		var pool []ptrace.Traces
		b.ReportAllocs()
		for b.Loop() {
			if len(pool) == 0 {
				b.StopTimer()
				for range 64 {
					td := ptrace.NewTraces()
					src.CopyTo(td)
					pool = append(pool, td)
				}
				b.StartTimer()
			}
			td := pool[len(pool)-1]
			pool = pool[:len(pool)-1]
			consume(td)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(float64(b.N)*spans), "ns/span")
	})
}
