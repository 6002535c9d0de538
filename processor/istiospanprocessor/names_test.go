package istiospanprocessor

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
)

var allFormats = []Format{FormatAppLabelAndNamespace, FormatCanonicalNameOnly, FormatCanonicalNameAndNamespace, FormatPreserve}

func newTestNormalizer(t testing.TB, format Format, semconv bool) *nameNormalizer {
	t.Helper()
	tb, err := metadata.NewTelemetryBuilder(componenttest.NewNopTelemetrySettings())
	require.NoError(t, err)
	return newNameNormalizer(ServiceNameConfig{Format: format, SemconvAttributes: semconv}, tb)
}

// normalizeOne normalises td's first resource and returns the counts.
func normalizeOne(t testing.TB, td ptrace.Traces, format Format, semconv bool) nameCounts {
	t.Helper()
	var c nameCounts
	newTestNormalizer(t, format, semconv).normalizeResource(td.ResourceSpans(), td.ResourceSpans().At(0), &c)
	return c
}

// proxySpanAttrs is the Envoy tag set of a sidecar span, trimmed to the tags
// the processor reads plus a few it must leave alone.
func proxySpanAttrs(c, ns, rev string) map[string]any {
	return map[string]any{
		"node_id":                  "sidecar~10.244.0.25~" + c + "-v1-54bb874995-7xk2m." + ns + "~" + ns + ".svc.cluster.local",
		"component":                "proxy",
		"http.status_code":         "200",
		"upstream_cluster":         "inbound|9080||",
		"istio.canonical_service":  c,
		"istio.namespace":          ns,
		"istio.canonical_revision": rev,
		"istio.mesh_id":            "cluster.local",
	}
}

// oneResource builds a batch with one resource holding the given spans.
// serviceName nil means the resource has no service.name.
func oneResource(t testing.TB, resAttrs map[string]any, spans ...map[string]any) ptrace.Traces {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	require.NoError(t, rs.Resource().Attributes().FromRaw(resAttrs))
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("envoy")
	for i, a := range spans {
		s := ss.Spans().AppendEmpty()
		s.SetName("span")
		s.SetSpanID(pcommon.SpanID{byte(i + 1)})
		require.NoError(t, s.Attributes().FromRaw(a))
	}
	return td
}

func resourceAttr(td ptrace.Traces, i int, key string) (string, bool) {
	v, ok := td.ResourceSpans().At(i).Resource().Attributes().Get(key)
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

// workload is one row of the Bookinfo cheat-sheet in istio-tracing.md §6.5:
// the identity Envoy tags on spans, and the service.name each Istio mode sends.
type workload struct {
	name     string
	c, ns    string
	incoming map[string]string // Istio input mode -> service.name on the wire
	// want is the target per format; APP_LABEL_AND_NAMESPACE may depend on
	// the incoming name, so it is given per incoming mode where it differs.
	wantCNO, wantCNN string
	wantAppLabel     map[string]string
}

var cheatSheet = []workload{
	{
		name: "productpage-v1", c: "productpage", ns: "default",
		incoming: map[string]string{
			"APP_LABEL_AND_NAMESPACE":      "productpage.default",
			"CANONICAL_NAME_ONLY":          "productpage",
			"CANONICAL_NAME_AND_NAMESPACE": "productpage.default",
			"OTEL_SEMANTIC_CONVENTIONS":    "productpage-v1",
			"OTEL_RESOURCE_ATTRIBUTES":     "bookinfo-frontend",
		},
		wantCNO: "productpage", wantCNN: "productpage.default",
	},
	{
		name: "istioctl ingress gateway", c: "istio-ingressgateway", ns: "istio-system",
		incoming: map[string]string{
			"APP_LABEL_AND_NAMESPACE":      "istio-ingressgateway.istio-system",
			"CANONICAL_NAME_ONLY":          "istio-ingressgateway",
			"CANONICAL_NAME_AND_NAMESPACE": "istio-ingressgateway.istio-system",
			"OTEL_SEMANTIC_CONVENTIONS":    "istio-ingressgateway",
		},
		wantCNO: "istio-ingressgateway", wantCNN: "istio-ingressgateway.istio-system",
	},
	{
		name: "Helm-style details-v1", c: "details", ns: "default",
		incoming: map[string]string{
			"APP_LABEL_AND_NAMESPACE (<=1.29)": "details-v1.default",
			"APP_LABEL_AND_NAMESPACE (>=1.30)": "details.default",
			"CANONICAL_NAME_ONLY":              "details",
			"CANONICAL_NAME_AND_NAMESPACE":     "details.default",
			"OTEL_SEMANTIC_CONVENTIONS":        "bookinfo-details",
		},
		wantCNO: "details", wantCNN: "details.default",
		// The contract keeps an incoming "<x>.N": Istio's own app-label name.
		wantAppLabel: map[string]string{"APP_LABEL_AND_NAMESPACE (<=1.29)": "details-v1.default"},
	},
	{
		name: "pod with no labels, Deployment worker", c: "worker", ns: "default",
		incoming: map[string]string{
			"APP_LABEL_AND_NAMESPACE":      "worker.default",
			"CANONICAL_NAME_ONLY":          "worker",
			"CANONICAL_NAME_AND_NAMESPACE": "worker.default",
			"OTEL_SEMANTIC_CONVENTIONS":    "worker",
		},
		wantCNO: "worker", wantCNN: "worker.default",
	},
	{
		name: "gateway in istio-ingress", c: "istio-ingressgateway", ns: "istio-ingress",
		incoming: map[string]string{
			"APP_LABEL_AND_NAMESPACE": "istio-ingressgateway.istio-ingress",
			"CANONICAL_NAME_ONLY":     "istio-ingressgateway",
			"empty node cluster":      "unknown_service:envoy",
			"many dots":               "istio-ingressgateway.istio-ingress.svc.cluster.local",
		},
		wantCNO: "istio-ingressgateway", wantCNN: "istio-ingressgateway.istio-ingress",
	},
	{
		name: "dotted canonical name", c: "shop.frontend", ns: "shop",
		incoming: map[string]string{
			"APP_LABEL_AND_NAMESPACE": "shop.frontend.shop",
			"CANONICAL_NAME_ONLY":     "shop.frontend",
		},
		wantCNO: "shop.frontend", wantCNN: "shop.frontend.shop",
	},
}

// TestTargetName covers every incoming mode x every format on the cheat-sheet
// workloads, and checks that the modes converge.
func TestTargetName(t *testing.T) {
	for _, w := range cheatSheet {
		for mode, incoming := range w.incoming {
			for _, format := range allFormats {
				want := incoming
				switch format {
				case FormatCanonicalNameOnly:
					want = w.wantCNO
				case FormatCanonicalNameAndNamespace:
					want = w.wantCNN
				case FormatAppLabelAndNamespace:
					want = w.wantCNN
					if kept, ok := w.wantAppLabel[mode]; ok {
						want = kept
					}
				}
				t.Run(w.name+"/"+mode+"/"+string(format), func(t *testing.T) {
					td := oneResource(t, map[string]any{"service.name": incoming},
						proxySpanAttrs(w.c, w.ns, "v1"), proxySpanAttrs(w.c, w.ns, "v1"))
					var c nameCounts
					n := newTestNormalizer(t, format, false)
					n.normalizeResource(td.ResourceSpans(), td.ResourceSpans().At(0), &c)

					got, _ := resourceAttr(td, 0, "service.name")
					assert.Equal(t, want, got)
					orig, hasOrig := resourceAttr(td, 0, "istio.original_service_name")
					if want == incoming {
						assert.False(t, hasOrig, "no rename, so no original name")
						assert.Equal(t, int64(0), c.renamed)
					} else {
						assert.Equal(t, incoming, orig)
						assert.Equal(t, int64(2), c.renamed)
					}
					assert.Equal(t, 1, td.ResourceSpans().Len())
				})
			}
		}
	}
}

func TestMissingServiceName(t *testing.T) {
	for _, format := range allFormats {
		t.Run(string(format), func(t *testing.T) {
			td := oneResource(t, map[string]any{"telemetry.sdk.name": "envoy"}, proxySpanAttrs("reviews", "default", "v2"))
			c := normalizeOne(t, td, format, false)
			got, ok := resourceAttr(td, 0, "service.name")
			_, hasOrig := resourceAttr(td, 0, "istio.original_service_name")
			assert.False(t, hasOrig, "there was no name to keep")
			switch format {
			case FormatPreserve:
				assert.False(t, ok)
				assert.Equal(t, int64(1), c.untouched[reasonPreserve])
			case FormatCanonicalNameOnly:
				assert.Equal(t, "reviews", got)
			default:
				assert.Equal(t, "reviews.default", got)
			}
		})
	}
}

func TestOriginalNameIsNeverOverwritten(t *testing.T) {
	// A first collector ran with CANONICAL_NAME_ONLY; this one wants C.N.
	td := oneResource(t, map[string]any{"service.name": "reviews", "istio.original_service_name": "reviews-v2"},
		proxySpanAttrs("reviews", "default", "v2"))
	normalizeOne(t, td, FormatCanonicalNameAndNamespace, false)
	got, _ := resourceAttr(td, 0, "service.name")
	orig, _ := resourceAttr(td, 0, "istio.original_service_name")
	assert.Equal(t, "reviews.default", got)
	assert.Equal(t, "reviews-v2", orig)
}

func TestSemconvAttributes(t *testing.T) {
	tests := []struct {
		name     string
		res      map[string]any
		revs     []string
		semconv  bool
		format   Format
		want     map[string]any // expected resource attributes, exactly
		untouchd untouchedReason
	}{
		{
			name: "added from istio tags", semconv: true, format: FormatCanonicalNameAndNamespace,
			res: map[string]any{"service.name": "reviews.default"}, revs: []string{"v2", "v2"},
			want: map[string]any{"service.name": "reviews.default", "service.namespace": "default",
				"k8s.namespace.name": "default", "service.version": "v2"},
		},
		{
			name: "latest is not a version", semconv: true, format: FormatCanonicalNameAndNamespace,
			res: map[string]any{"service.name": "reviews.default"}, revs: []string{"latest"},
			want: map[string]any{"service.name": "reviews.default", "service.namespace": "default", "k8s.namespace.name": "default"},
		},
		{
			name: "revisions disagree: no version", semconv: true, format: FormatCanonicalNameAndNamespace,
			res: map[string]any{"service.name": "reviews.default"}, revs: []string{"v2", "v3"},
			want: map[string]any{"service.name": "reviews.default", "service.namespace": "default", "k8s.namespace.name": "default"},
		},
		{
			name: "invalid revision: no version", semconv: true, format: FormatCanonicalNameAndNamespace,
			res: map[string]any{"service.name": "reviews.default"}, revs: []string{"vé2"},
			want: map[string]any{"service.name": "reviews.default", "service.namespace": "default", "k8s.namespace.name": "default"},
		},
		{
			name: "existing values win (Istio OTEL_SEMANTIC_CONVENTIONS)", semconv: true, format: FormatCanonicalNameAndNamespace,
			res: map[string]any{"service.name": "reviews-v2", "service.namespace": "bookinfo-team", "service.version": "1.20.3",
				"k8s.namespace.name": int64(3), "service.instance.id": "default.reviews-v2-64776cb9bd-vw4kc.reviews"},
			revs: []string{"v2"},
			want: map[string]any{"service.name": "reviews.default", "istio.original_service_name": "reviews-v2",
				"service.namespace": "bookinfo-team", "service.version": "1.20.3", "k8s.namespace.name": int64(3),
				"service.instance.id": "default.reviews-v2-64776cb9bd-vw4kc.reviews"},
		},
		{
			name: "off", semconv: false, format: FormatCanonicalNameAndNamespace,
			res: map[string]any{"service.name": "reviews.default"}, revs: []string{"v2"},
			want: map[string]any{"service.name": "reviews.default"},
		},
		{
			name: "preserve still adds them", semconv: true, format: FormatPreserve,
			res: map[string]any{"service.name": "reviews-v2"}, revs: []string{"v2"},
			want: map[string]any{"service.name": "reviews-v2", "service.namespace": "default",
				"k8s.namespace.name": "default", "service.version": "v2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var spans []map[string]any
			for _, r := range tt.revs {
				spans = append(spans, proxySpanAttrs("reviews", "default", r))
			}
			td := oneResource(t, tt.res, spans...)
			normalizeOne(t, td, tt.format, tt.semconv)
			assert.Equal(t, tt.want, td.ResourceSpans().At(0).Resource().Attributes().AsRaw())
		})
	}
}

func TestHugeValuesAreLeftAlone(t *testing.T) {
	huge := strings.Repeat("r", 1<<20)
	for _, attrs := range []map[string]any{
		proxySpanAttrs(huge, "default", "v1"),
		proxySpanAttrs("reviews", huge, "v1"),
	} {
		td := oneResource(t, map[string]any{"service.name": "reviews-v2"}, attrs)
		before := ptrace.NewTraces()
		td.CopyTo(before)
		c := normalizeOne(t, td, FormatCanonicalNameAndNamespace, true)
		assert.Equal(t, before, td)
		assert.Equal(t, int64(1), c.untouched[reasonMalformedTags])
	}
	// A huge incoming name is just a name: renamed, and kept as the original.
	td := oneResource(t, map[string]any{"service.name": huge}, proxySpanAttrs("reviews", "default", "v1"))
	normalizeOne(t, td, FormatCanonicalNameAndNamespace, false)
	got, _ := resourceAttr(td, 0, "service.name")
	orig, _ := resourceAttr(td, 0, "istio.original_service_name")
	assert.Equal(t, "reviews.default", got)
	assert.Equal(t, huge, orig)
}

// manyResources builds resources resources of spansPer proxy spans each,
// all named by the APP_LABEL_AND_NAMESPACE rule (name "<C>.default").
func manyResources(t testing.TB, resources, spansPer int) ptrace.Traces {
	t.Helper()
	td := ptrace.NewTraces()
	for i := range resources {
		c := []string{"productpage", "details", "reviews", "ratings", "istio-ingressgateway"}[i%5]
		spans := make([]map[string]any, spansPer)
		for j := range spans {
			spans[j] = proxySpanAttrs(c, "default", "v1")
		}
		oneResource(t, map[string]any{"service.name": c + ".default"}, spans...).
			ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	}
	return td
}

// TestAllocations asserts the hot path's allocation budget: none for a batch
// whose names and attributes are already right, and none per span when
// renaming in place (only per resource).
func TestAllocations(t *testing.T) {
	ctx := context.Background()
	t.Run("already normalised: zero", func(t *testing.T) {
		for _, format := range allFormats {
			n := newTestNormalizer(t, format, true)
			td := manyResources(t, 20, 5)
			n.normalize(ctx, td) // first pass adds semconv attributes
			allocs := testing.AllocsPerRun(100, func() { n.normalize(ctx, td) })
			assert.Zero(t, allocs, "format %s", format)
		}
	})
	t.Run("renamed in place: nothing per span", func(t *testing.T) {
		// Alternate two formats so that every run renames every resource.
		a := newTestNormalizer(t, FormatCanonicalNameOnly, true)
		b := newTestNormalizer(t, FormatCanonicalNameAndNamespace, true)
		perBatch := func(spansPer int) float64 {
			td := manyResources(t, 20, spansPer)
			a.normalize(ctx, td)
			b.normalize(ctx, td)
			return testing.AllocsPerRun(50, func() {
				a.normalize(ctx, td)
				b.normalize(ctx, td)
			})
		}
		one, many := perBatch(1), perBatch(25)
		assert.InDelta(t, one, many, 0.5, "allocations must not grow with spans per resource")
		// Per resource and rename: the new string value (and the C.N string).
		assert.LessOrEqual(t, one, float64(20*2*2))
	})
}

func TestNonStringServiceNameIsNotSplit(t *testing.T) {
	td := oneResource(t, map[string]any{"service.name": int64(7)},
		proxySpanAttrs("productpage", "default", "v1"), proxySpanAttrs("reviews", "default", "v2"),
		map[string]any{"http.request.method": "GET"})
	before := ptrace.NewTraces()
	td.CopyTo(before)
	c := normalizeOne(t, td, FormatCanonicalNameAndNamespace, true)
	assert.Equal(t, before, td)
	assert.Equal(t, int64(2), c.untouched[reasonInvalidServiceName])
	assert.Equal(t, int64(1), c.untouched[reasonNotIstio])
	assert.Zero(t, c.split)
}
