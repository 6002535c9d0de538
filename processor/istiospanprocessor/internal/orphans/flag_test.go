package orphans

import (
	"strings"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/ptracetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// The no-propagation fixture must flag exactly productpage's two CLIENT
// roots, and the healthy ones nothing, whatever re-linking does.
func TestFlagFixtures(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{fxPropagated, nil},
		{fxNoPropagate, []string{"288ce221e446097c", "69bada79a64698c3"}},
		{fxForwardsXRID, []string{"288ce221e446097c", "69bada79a64698c3"}},
		{fxSpawn, nil},
		{fxLegacy, nil},
	}
	for _, tt := range tests {
		for _, link := range []bool{true, false} {
			t.Run(tt.file, func(t *testing.T) {
				cfg := DefaultConfig()
				cfg.LinkByRequestID = link
				d, _ := newTestDetector(t, cfg)
				td := readTraces(t, tt.file)
				d.Process(td)
				assert.ElementsMatch(t, tt.want, flagged(td))
				for _, s := range tt.want {
					span := findSpan(t, td, s)
					assert.Equal(t, ptrace.SpanKindClient, span.Kind())
					assert.True(t, span.ParentSpanID().IsEmpty())
					reason, ok := span.Attributes().Get(AttrOrphanReason)
					require.True(t, ok)
					assert.Equal(t, ReasonMissingTraceContext, reason.Str())
					svc, _ := span.Attributes().Get("istio.canonical_service")
					assert.Equal(t, "productpage", svc.Str())
				}
				if tt.want == nil {
					require.NoError(t, ptracetest.CompareTraces(readTraces(t, tt.file), td),
						"a healthy trace passes through unchanged")
				}
			})
		}
	}
}

func TestFlagRules(t *testing.T) {
	const tr, tr2 = "11111111111111111111111111111111", "22222222222222222222222222222222"
	outbound := "outbound|9080||details.default.svc.cluster.local"
	tests := []struct {
		name    string
		origins []string
		build   func(td ptrace.Traces) ptrace.Span // returns the span under test
		want    bool
	}{
		{
			name: "sidecar CLIENT root is flagged",
			build: func(td ptrace.Traces) ptrace.Span {
				return productpageRoot(addProxy(td, "productpage.default"), tr, "a000000000000001", "r1", 0)
			},
			want: true,
		},
		{
			name: "sidecar CLIENT with a parent is not",
			build: func(td ptrace.Traces) ptrace.Span {
				p := addProxy(td, "productpage.default")
				return p.add(spanOpts{trace: tr, span: "a000000000000002", parent: "a000000000000001", kind: ptrace.SpanKindClient,
					nodeID: nodeProductpage, upstreamCluster: outbound, canonical: "productpage", ns: "default"})
			},
		},
		{
			name: "sidecar SERVER root is not",
			build: func(td ptrace.Traces) ptrace.Span {
				return productpageServer(addProxy(td, "productpage.default"), tr, "a000000000000003", "", "r1", 0, 10)
			},
		},
		{
			name: "gateway CLIENT root (spawn_upstream_span off) is not",
			build: func(td ptrace.Traces) ptrace.Span {
				p := addProxy(td, "istio-ingressgateway.istio-system")
				return p.add(spanOpts{trace: tr, span: "a000000000000004", kind: ptrace.SpanKindClient,
					nodeID: nodeGateway, upstreamCluster: "outbound|9080||productpage.default.svc.cluster.local",
					canonical: "istio-ingressgateway", ns: "istio-system"})
			},
		},
		{
			name: "gateway spawn_upstream_span: SERVER root and its router CLIENT child are not",
			build: func(td ptrace.Traces) ptrace.Span {
				p := addProxy(td, "istio-ingressgateway.istio-system")
				p.add(spanOpts{trace: tr, span: "a000000000000005", kind: ptrace.SpanKindServer,
					nodeID: nodeGateway, upstreamCluster: "outbound|9080||productpage.default.svc.cluster.local",
					canonical: "istio-ingressgateway", ns: "istio-system"})
				return p.add(spanOpts{trace: tr, span: "a000000000000006", parent: "a000000000000005", kind: ptrace.SpanKindClient,
					name:            "router outbound|9080||productpage.default.svc.cluster.local; egress",
					upstreamCluster: "outbound|9080||productpage.default.svc.cluster.local",
					canonical:       "istio-ingressgateway", ns: "istio-system"})
			},
		},
		{
			name: "router-shaped CLIENT root without node_id is a gateway's, even under another name",
			build: func(td ptrace.Traces) ptrace.Span {
				p := addProxy(td, "edge.ingress")
				return p.add(spanOpts{trace: tr, span: "a000000000000007", kind: ptrace.SpanKindClient,
					name:            "router outbound|9080||productpage.default.svc.cluster.local; egress",
					upstreamCluster: "outbound|9080||productpage.default.svc.cluster.local", canonical: "edge", ns: "ingress"})
			},
		},
		{
			name: "no node_id: outbound| CLIENT root of a non-gateway workload is flagged",
			build: func(td ptrace.Traces) ptrace.Span {
				p := addProxy(td, "productpage.default")
				return p.add(spanOpts{trace: tr, span: "a000000000000008", kind: ptrace.SpanKindClient,
					name: "details.default.svc.cluster.local:9080/*", upstreamCluster: outbound, canonical: "productpage", ns: "default"})
			},
			want: true,
		},
		{
			name: "no node_id, no Istio tags: service.name decides the gateway test",
			build: func(td ptrace.Traces) ptrace.Span {
				p := addProxy(td, "productpage.default")
				return p.add(spanOpts{trace: tr, span: "a000000000000009", kind: ptrace.SpanKindClient, upstreamCluster: outbound})
			},
			want: true,
		},
		{
			name: "no node_id: gateway CLIENT root (by canonical name) is not",
			build: func(td ptrace.Traces) ptrace.Span {
				p := addProxy(td, "istio-ingressgateway.istio-system")
				return p.add(spanOpts{trace: tr, span: "a00000000000000a", kind: ptrace.SpanKindClient,
					upstreamCluster: "outbound|9080||productpage.default.svc.cluster.local", canonical: "istio-ingressgateway", ns: "istio-system"})
			},
		},
		{
			name: "no node_id: a router~ span in the same flush makes it a gateway's",
			build: func(td ptrace.Traces) ptrace.Span {
				p := addProxy(td, "edge.ingress")
				p.add(spanOpts{trace: tr2, span: "a00000000000000b", kind: ptrace.SpanKindClient,
					nodeID: nodeGateway, upstreamCluster: outbound, canonical: "edge", ns: "ingress"})
				return p.add(spanOpts{trace: tr, span: "a00000000000000c", kind: ptrace.SpanKindClient,
					upstreamCluster: outbound, canonical: "edge", ns: "ingress"})
			},
		},
		{
			name: "no node_id: inbound| cluster on a CLIENT span is not outbound",
			build: func(td ptrace.Traces) ptrace.Span {
				p := addProxy(td, "productpage.default")
				return p.add(spanOpts{trace: tr, span: "a00000000000000d", kind: ptrace.SpanKindClient,
					upstreamCluster: "inbound|9080||", canonical: "productpage", ns: "default"})
			},
		},
		{
			name: "non-Istio span (application SDK CLIENT root) is not",
			build: func(td ptrace.Traces) ptrace.Span {
				rs := td.ResourceSpans().AppendEmpty()
				rs.Resource().Attributes().PutStr("service.name", "productpage")
				s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
				s.SetTraceID(tid(tr))
				s.SetSpanID(sid("a00000000000000e"))
				s.SetKind(ptrace.SpanKindClient)
				s.SetName("GET")
				s.Attributes().PutStr("http.request.method", "GET")
				return s
			},
		},
		{
			name: "waypoint CLIENT root is not",
			build: func(td ptrace.Traces) ptrace.Span {
				p := addProxy(td, "waypoint.default")
				return p.add(spanOpts{trace: tr, span: "a00000000000000f", kind: ptrace.SpanKindClient,
					nodeID: "waypoint~10.244.0.50~waypoint-6d7f.default~default.svc.cluster.local", upstreamCluster: outbound,
					canonical: "waypoint", ns: "default"})
			},
		},
		{
			name: "unknown node_id prefix is not",
			build: func(td ptrace.Traces) ptrace.Span {
				p := addProxy(td, "productpage.default")
				return p.add(spanOpts{trace: tr, span: "a000000000000010", kind: ptrace.SpanKindClient,
					nodeID: "proxyless~10.0.0.1~x.default~default.svc.cluster.local", upstreamCluster: outbound,
					canonical: "productpage", ns: "default"})
			},
		},
		{
			name: "INTERNAL root span is not",
			build: func(td ptrace.Traces) ptrace.Span {
				p := addProxy(td, "productpage.default")
				return p.add(spanOpts{trace: tr, span: "a000000000000011", kind: ptrace.SpanKindInternal,
					nodeID: nodeProductpage, upstreamCluster: outbound, canonical: "productpage", ns: "default"})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Origins = tt.origins
			d, _ := newTestDetector(t, cfg)
			td := ptrace.NewTraces()
			span := tt.build(td)
			ref := refOf(span).span
			d.Process(td)
			got := findSpan(t, td, ref)
			_, has := got.Attributes().Get(AttrOrphan)
			assert.Equal(t, tt.want, has)
			if tt.want {
				assert.ElementsMatch(t, []string{ref}, flagged(td), "only the span under test")
			} else {
				assert.Empty(t, flagged(td))
			}
		})
	}
}

func TestOrigins(t *testing.T) {
	const tr = "33333333333333333333333333333333"
	// loadgen in namespace tools, with the normalised name loadgen.tools.
	build := func(td ptrace.Traces, withTags bool) {
		p := addProxy(td, "loadgen.tools")
		o := spanOpts{trace: tr, span: "b000000000000001", kind: ptrace.SpanKindClient, nodeID: nodeLoadgen,
			upstreamCluster: "outbound|9080||productpage.default.svc.cluster.local", requestID: "r-loadgen"}
		if withTags {
			o.canonical, o.ns = "loadgen", "tools"
		}
		p.add(o)
	}
	tests := []struct {
		origins  []string
		withTags bool
		flagged  bool
	}{
		{origins: nil, withTags: true, flagged: true},
		{origins: []string{"loadgen"}, withTags: true},
		{origins: []string{"loadgen.tools"}, withTags: true},
		{origins: []string{"loadgen.default"}, withTags: true, flagged: true}, // wrong namespace
		{origins: []string{"load"}, withTags: true, flagged: true},            // no prefix matching
		{origins: []string{"cron", "loadgen"}, withTags: true},
		// Without Istio tags only the normalised service.name is there.
		{origins: []string{"loadgen.tools"}, withTags: false},
		{origins: []string{"loadgen"}, withTags: false, flagged: true},
	}
	for _, tt := range tests {
		name := "tags"
		if !tt.withTags {
			name = "no-tags"
		}
		if len(tt.origins) > 0 {
			name += "/" + strings.Join(tt.origins, "/")
		}
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Origins = tt.origins
			d, _ := newTestDetector(t, cfg)
			td := ptrace.NewTraces()
			build(td, tt.withTags)
			d.Process(td)
			assert.Equal(t, tt.flagged, len(flagged(td)) == 1)
			rep := d.Report()
			require.Len(t, rep, 1)
			assert.Equal(t, int64(1), rep[0].Outbound, "an origin's CLIENT spans still count as outbound")
		})
	}

	t.Run("namespace from resource service.namespace", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Origins = []string{"loadgen.tools"}
		d, _ := newTestDetector(t, cfg)
		td := ptrace.NewTraces()
		p := addProxy(td, "loadgen")
		p.res.PutStr("service.namespace", "tools")
		p.add(spanOpts{trace: tr, span: "b000000000000002", kind: ptrace.SpanKindClient, nodeID: nodeLoadgen,
			upstreamCluster: "outbound|9080||productpage.default.svc.cluster.local"})
		d.Process(td)
		assert.Empty(t, flagged(td))
	})
}

func TestFlagIsIdempotent(t *testing.T) {
	d, _ := newTestDetector(t, DefaultConfig())
	td := readTraces(t, fxNoPropagate)
	d.Process(td)
	once := ptrace.NewTraces()
	td.CopyTo(once)
	d.Process(td)
	require.NoError(t, ptracetest.CompareTraces(once, td))
	for _, s := range flagged(td) {
		assert.Equal(t, 2+countAttrs(t, readTraces(t, fxNoPropagate), s), findSpan(t, td, s).Attributes().Len())
	}
}

func countAttrs(t *testing.T, td ptrace.Traces, span string) int {
	return findSpan(t, td, span).Attributes().Len()
}

func TestFlagOverwritesWrongTypedMarker(t *testing.T) {
	d, _ := newTestDetector(t, DefaultConfig())
	td := ptrace.NewTraces()
	s := productpageRoot(addProxy(td, "productpage.default"), "44444444444444444444444444444444", "c000000000000001", "r", 0)
	s.Attributes().PutStr(AttrOrphan, "true") // a string, as some other pipeline might have set
	d.Process(td)
	v, _ := s.Attributes().Get(AttrOrphan)
	assert.Equal(t, pcommon.ValueTypeBool, v.Type())
	assert.True(t, v.Bool())
}

func TestDisabledDoesNothing(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Enabled = false
	d, _ := newTestDetector(t, cfg)
	td := readTraces(t, fxForwardsXRID)
	d.Process(td)
	require.NoError(t, ptracetest.CompareTraces(readTraces(t, fxForwardsXRID), td))
	assert.Empty(t, d.Report())
}
