package istiospanprocessor

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadatatest"
)

func TestLifecycle(t *testing.T) {
	f := NewFactory()
	assert.Equal(t, metadata.Type, f.Type())
	sink := new(consumertest.TracesSink)
	p, err := f.CreateTraces(context.Background(), processortest.NewNopSettings(metadata.Type), f.CreateDefaultConfig(), sink)
	require.NoError(t, err)
	assert.True(t, p.Capabilities().MutatesData)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, p.ConsumeTraces(context.Background(), readInput(t, "10-bookinfo-canonical-name-only-istio125.json")))
	require.NoError(t, p.Shutdown(context.Background()))
	require.Equal(t, 8, sink.SpanCount())
	got, _ := resourceAttr(sink.AllTraces()[0], 1, "service.name")
	assert.Equal(t, "productpage.default", got, "default format is CANONICAL_NAME_AND_NAMESPACE")
}

func TestTelemetry(t *testing.T) {
	tests := []struct {
		name      string
		input     string
		format    Format
		renamed   int64
		untouched map[string]int64
		split     int64
	}{
		{
			// 8 proxy spans named C.N -> C; the app SDK resource (1 span)
			// and the app span merged into ratings' resource (1) are not
			// Istio; that merged resource is split.
			name: "app spans mixed in", input: "20-bookinfo-with-application-sdk-spans.json",
			format: FormatCanonicalNameOnly, renamed: 8, split: 1,
			untouched: map[string]int64{"not_istio": 2},
		},
		{
			name: "already normalised", input: "20-bookinfo-with-application-sdk-spans.json",
			format: FormatCanonicalNameAndNamespace, split: 1,
			untouched: map[string]int64{"not_istio": 2, "already_normalized": 8},
		},
		{
			name: "preserve", input: "01-bookinfo-propagated-app-label-ns-istio125.json",
			format: FormatPreserve, untouched: map[string]int64{"preserve": 8},
		},
		{
			// Two workloads in one resource: productpage's 3 spans stay,
			// reviews' 2 spans move out; all 8 get C.
			name: "merged workloads", input: "21-merged-workloads-one-resource.json",
			format: FormatCanonicalNameOnly, renamed: 8, split: 1,
		},
		{
			// One span per case in 30-odd-input.json: see its README entry.
			name: "odd input", input: "30-odd-input.json",
			format:    FormatCanonicalNameAndNamespace,
			untouched: map[string]int64{"no_istio_tags": 1, "malformed_istio_tags": 15, "invalid_service_name": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel := componenttest.NewTelemetry()
			t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
			sink := new(consumertest.TracesSink)
			cfg := &Config{ServiceName: ServiceNameConfig{Format: tt.format, SemconvAttributes: true}}
			p, err := NewFactory().CreateTraces(context.Background(), metadatatest.NewSettings(tel), cfg, sink)
			require.NoError(t, err)
			require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
			in := readInput(t, tt.input)
			spans := in.SpanCount()
			require.NoError(t, p.ConsumeTraces(context.Background(), in))
			require.NoError(t, p.Shutdown(context.Background()))
			require.Equal(t, spans, sink.SpanCount(), "nothing dropped")

			var total int64
			if tt.renamed > 0 {
				metadatatest.AssertEqualProcessorIstioSpanSpansRenamed(t, tel,
					[]metricdata.DataPoint[int64]{{Value: tt.renamed}}, metricdatatest.IgnoreTimestamp())
				total += tt.renamed
			} else {
				_, err := tel.GetMetric("otelcol_processor_istio_span_spans_renamed")
				require.Error(t, err, "no renames, no data point")
			}
			var dps []metricdata.DataPoint[int64]
			for reason, v := range tt.untouched {
				dps = append(dps, metricdata.DataPoint[int64]{
					Attributes: attribute.NewSet(attribute.String("reason", reason)), Value: v,
				})
				total += v
			}
			if len(dps) > 0 {
				metadatatest.AssertEqualProcessorIstioSpanSpansUntouched(t, tel, dps, metricdatatest.IgnoreTimestamp())
			}
			assert.Equal(t, int64(spans), total, "every span is counted once")
			if tt.split > 0 {
				metadatatest.AssertEqualProcessorIstioSpanResourcesSplit(t, tel,
					[]metricdata.DataPoint[int64]{{Value: tt.split}}, metricdatatest.IgnoreTimestamp())
			}
		})
	}
}

// TestOddInputUnchanged: every resource of the odd-input fixture comes out
// byte-for-byte as it went in, whatever the format.
func TestOddInputUnchanged(t *testing.T) {
	for _, format := range allFormats {
		t.Run(string(format), func(t *testing.T) {
			in := readInput(t, "30-odd-input.json")
			out := runProcessor(t, &Config{ServiceName: ServiceNameConfig{Format: format, SemconvAttributes: true}}, readInput(t, "30-odd-input.json"))
			require.Equal(t, in.ResourceSpans().Len(), out.ResourceSpans().Len())
			for i := 0; i < in.ResourceSpans().Len(); i++ {
				assert.Equal(t, marshalResource(t, in.ResourceSpans().At(i)), marshalResource(t, out.ResourceSpans().At(i)), "resource %d", i)
			}
		})
	}
}

// TestPreserveWithoutSemconvIsANoOp: with nothing to write the processor
// must not even split resources.
func TestPreserveWithoutSemconvIsANoOp(t *testing.T) {
	for _, in := range inputs(t) {
		t.Run(in, func(t *testing.T) {
			want := readInput(t, in)
			out := runProcessor(t, &Config{ServiceName: ServiceNameConfig{Format: FormatPreserve}}, readInput(t, in))
			wb, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(want)
			require.NoError(t, err)
			ob, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(out)
			require.NoError(t, err)
			assert.Equal(t, wb, ob)
		})
	}
}

// TestConvergence: whatever mode each proxy ran in, CANONICAL_NAME_* formats
// give every workload the same name. (APP_LABEL_AND_NAMESPACE keeps incoming
// "<x>.N" names by contract, so it converges only where x is the app label.)
func TestConvergence(t *testing.T) {
	modes := []string{
		"01-bookinfo-propagated-app-label-ns-istio125.json",
		"10-bookinfo-canonical-name-only-istio125.json",
		"11-bookinfo-otel-semantic-conventions.json",
		"12-bookinfo-otel-resource-attributes-override-istio125.json",
		"13-bookinfo-mixed-modes-upgrade.json",
	}
	want := map[Format][]string{
		FormatCanonicalNameOnly:         {"istio-ingressgateway", "productpage", "details", "reviews", "ratings"},
		FormatCanonicalNameAndNamespace: {"istio-ingressgateway.istio-system", "productpage.default", "details.default", "reviews.default", "ratings.default"},
	}
	for format, names := range want {
		for _, in := range modes {
			t.Run(string(format)+"/"+in, func(t *testing.T) {
				out := runProcessor(t, &Config{ServiceName: ServiceNameConfig{Format: format, SemconvAttributes: true}}, readInput(t, in))
				var got []string
				for i := 0; i < out.ResourceSpans().Len(); i++ {
					n, _ := resourceAttr(out, i, "service.name")
					got = append(got, n)
				}
				assert.Equal(t, names, got)
			})
		}
	}
	// APP_LABEL_AND_NAMESPACE on the modes whose names carry no other app name.
	for _, in := range modes[:3] {
		out := runProcessor(t, &Config{ServiceName: ServiceNameConfig{Format: FormatAppLabelAndNamespace}}, readInput(t, in))
		for i := 0; i < out.ResourceSpans().Len(); i++ {
			n, _ := resourceAttr(out, i, "service.name")
			assert.Equal(t, want[FormatCanonicalNameAndNamespace][i], n, in)
		}
	}
}

// TestSplitAppLabelOwnership: when workloads are merged into one resource, a
// split-off workload must not keep another workload's "<x>.N" name.
func TestSplitAppLabelOwnership(t *testing.T) {
	tests := []struct {
		name     string
		incoming string
		want     map[string]string // canonical service -> service.name
	}{
		{
			// Only the gateway is in istio-system: it owns the name.
			name: "one workload in the namespace owns it", incoming: "ingress-gw.istio-system",
			want: map[string]string{"istio-ingressgateway": "ingress-gw.istio-system", "productpage": "productpage.default"},
		},
		{
			name: "nobody owns it", incoming: "bookinfo",
			want: map[string]string{"istio-ingressgateway": "istio-ingressgateway.istio-system", "productpage": "productpage.default"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			td := oneResource(t, map[string]any{"service.name": tt.incoming},
				proxySpanAttrs("istio-ingressgateway", "istio-system", "latest"),
				proxySpanAttrs("productpage", "default", "v1"),
				proxySpanAttrs("istio-ingressgateway", "istio-system", "latest"))
			out := runProcessor(t, &Config{ServiceName: ServiceNameConfig{Format: FormatAppLabelAndNamespace}}, td)
			require.Equal(t, 2, out.ResourceSpans().Len())
			require.Equal(t, 3, out.SpanCount())
			for i := 0; i < out.ResourceSpans().Len(); i++ {
				rs := out.ResourceSpans().At(i)
				c, _ := rs.ScopeSpans().At(0).Spans().At(0).Attributes().Get("istio.canonical_service")
				name, _ := resourceAttr(out, i, "service.name")
				assert.Equal(t, tt.want[c.Str()], name)
				assert.Equal(t, "envoy", rs.ScopeSpans().At(0).Scope().Name(), "scope kept")
			}
			// Span order within a workload is kept.
			gw := out.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
			require.Equal(t, 2, gw.Len())
			assert.Less(t, gw.At(0).SpanID()[0], gw.At(1).SpanID()[0])
		})
	}
}
