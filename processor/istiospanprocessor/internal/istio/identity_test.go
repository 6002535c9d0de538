package istio

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

func TestIdentityOf(t *testing.T) {
	tests := []struct {
		name   string
		attrs  map[string]any
		want   Identity
		status TagStatus
	}{
		{"app SDK span", map[string]any{"http.request.method": "GET"}, Identity{}, NotProxy},
		{"sidecar", map[string]any{AttrCanonicalService: "reviews", AttrNamespace: "default", AttrCanonicalRevision: "v2"},
			Identity{"reviews", "default", "v2"}, Proxy},
		{"no revision", map[string]any{AttrCanonicalService: "reviews", AttrNamespace: "default"},
			Identity{"reviews", "default", ""}, Proxy},
		{"invalid revision dropped", map[string]any{AttrCanonicalService: "reviews", AttrNamespace: "default", AttrCanonicalRevision: "v2 beta"},
			Identity{"reviews", "default", ""}, Proxy},
		{"int revision dropped", map[string]any{AttrCanonicalService: "reviews", AttrNamespace: "default", AttrCanonicalRevision: 2},
			Identity{"reviews", "default", ""}, Proxy},
		{"dotted canonical name", map[string]any{AttrCanonicalService: "shop.frontend", AttrNamespace: "shop"},
			Identity{"shop.frontend", "shop", ""}, Proxy},
		{"only C", map[string]any{AttrCanonicalService: "reviews"}, Identity{}, Malformed},
		{"only N", map[string]any{AttrNamespace: "default"}, Identity{}, Malformed},
		{"empty C", map[string]any{AttrCanonicalService: "", AttrNamespace: "default"}, Identity{}, Malformed},
		{"empty N", map[string]any{AttrCanonicalService: "reviews", AttrNamespace: ""}, Identity{}, Malformed},
		{"int C", map[string]any{AttrCanonicalService: 7, AttrNamespace: "default"}, Identity{}, Malformed},
		{"bool N", map[string]any{AttrCanonicalService: "reviews", AttrNamespace: true}, Identity{}, Malformed},
		{"unicode C", map[string]any{AttrCanonicalService: "rëviews", AttrNamespace: "default"}, Identity{}, Malformed},
		{"dotted N", map[string]any{AttrCanonicalService: "reviews", AttrNamespace: "default.svc"}, Identity{}, Malformed},
		{"huge C", map[string]any{AttrCanonicalService: strings.Repeat("r", 64), AttrNamespace: "default"}, Identity{}, Malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := pcommon.NewMap()
			require.NoError(t, m.FromRaw(tt.attrs))
			got, status := IdentityOf(m)
			assert.Equal(t, tt.status, status)
			assert.Equal(t, tt.want, got)
			// A known identity only skips checks of values equal to its
			// own: every other value is judged as IdentityOf judges it.
			for _, known := range []Identity{{}, {"reviews", "default", "v2"}, {"shop.frontend", "shop", "latest"}} {
				got, status = IdentityOfLike(m, known)
				assert.Equal(t, tt.status, status, "known %v", known)
				assert.Equal(t, tt.want, got, "known %v", known)
			}
		})
	}
}

func TestValidNames(t *testing.T) {
	for _, tt := range []struct {
		s                        string
		label, canonical, nsname bool
	}{
		{"reviews", true, true, true},
		{"istio-ingressgateway", true, true, true},
		{"Reviews_V2", true, true, false},
		{"a", true, true, true},
		{"shop.frontend", true, true, false},
		{"a.b.c.d.e.f", true, true, false},
		{"a..b", true, false, false},
		{"a.-b", true, false, false},
		{"a_.b", true, false, false},
		{".a", false, false, false},
		{"a.", false, false, false},
		{"-a", false, false, false},
		{"", false, false, false},
		{"ü", false, false, false},
		{"a b", false, false, false},
		{strings.Repeat("a", 63), true, true, true},
		{strings.Repeat("a", 64), false, false, false},
	} {
		assert.Equal(t, tt.label, ValidLabelValue(tt.s), "label %q", tt.s)
		assert.Equal(t, tt.canonical, ValidCanonicalName(tt.s), "canonical %q", tt.s)
		assert.Equal(t, tt.nsname, ValidNamespace(tt.s), "namespace %q", tt.s)
	}
}

func TestProxyKindOf(t *testing.T) {
	for id, want := range map[any]ProxyKind{
		"sidecar~10.244.0.25~productpage-v1-54bb874995-7xk2m.default~default.svc.cluster.local":                ProxySidecar,
		"router~10.244.0.14~istio-ingressgateway-6b8f4d7c9d-q2x7v.istio-system~istio-system.svc.cluster.local": ProxyGateway,
		"waypoint~10.244.0.30~waypoint-7d9f.default~default.svc.cluster.local":                                 ProxyWaypoint,
		"client~1": ProxyUnknown,
		int64(1):   ProxyUnknown,
	} {
		m := pcommon.NewMap()
		require.NoError(t, m.FromRaw(map[string]any{AttrNodeID: id}))
		assert.Equal(t, want, ProxyKindOf(m), "%v", id)
	}
	assert.Equal(t, ProxyUnknown, ProxyKindOf(pcommon.NewMap()))
}

func TestIdentityOfDoesNotAllocate(t *testing.T) {
	m := pcommon.NewMap()
	require.NoError(t, m.FromRaw(map[string]any{AttrCanonicalService: "reviews", AttrNamespace: "default", AttrCanonicalRevision: "v2", AttrNodeID: "sidecar~x"}))
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = IdentityOf(m) }))
}

func BenchmarkIdentityOf(b *testing.B) {
	m := pcommon.NewMap()
	raw := map[string]any{}
	for _, k := range []string{"node_id", "zone", "guid:x-request-id", "downstream_cluster", "user_agent", "http.protocol",
		"peer.address", "request_size", "response_size", "component", "upstream_cluster", "upstream_cluster.name",
		"http.status_code", "response_flags", "istio.cluster_id", "istio.mesh_id"} {
		raw[k] = "x"
	}
	require.NoError(b, m.FromRaw(raw))
	// Envoy puts the istio.* tags after the standard ones.
	m.PutStr(AttrNamespace, "default")
	m.PutStr(AttrCanonicalRevision, "v1")
	m.PutStr(AttrCanonicalService, "productpage")
	m.PutStr("http.method", "GET")
	m.PutStr("http.url", "http://productpage:9080/productpage")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = IdentityOf(m)
	}
}
