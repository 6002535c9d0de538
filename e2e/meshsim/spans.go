package meshsim

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// fill writes a hop into a pdata span with Envoy's tags, all strings
// (Span::setTag), in the order real dumps show them. A downstream (HCM) span
// gets finalizeDownstreamSpan's tags plus setCommonTags and Istio's custom
// tags; the gateway's router span only finalizeUpstreamSpan's (no node_id,
// zone, guid, http.url or http.method). Status stays unset: every simulated
// response is a 200. No events, links, flags or trace state.
func (s *Sim) fill(sp ptrace.Span, h *hop) {
	sp.SetTraceID(h.trace)
	sp.SetSpanID(h.id)
	sp.SetParentSpanID(h.parent)
	sp.SetName(h.name)
	sp.SetKind(h.kind)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(h.start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(h.end))
	a := sp.Attributes()
	switch {
	case h.app:
		a.EnsureCapacity(3)
		a.PutStr("http.request.method", "GET")
		a.PutStr("url.path", "/productpage")
		a.PutInt("http.response.status_code", 200)
	case h.router:
		a.EnsureCapacity(13)
		a.PutStr("http.protocol", "HTTP/1.1")
		a.PutStr("upstream_address", h.upstream)
		a.PutStr("peer.address", h.peer)
		a.PutStr("component", "proxy")
		s.commonTags(a, h)
		s.istioTags(a, h.p.w)
	case s.minor < 23:
		// Pre-1.23 dumps list http.url and http.method right after the id,
		// and Istio's tags in their map order.
		a.EnsureCapacity(21)
		s.downstreamHead(a, h)
		a.PutStr("http.url", h.url)
		a.PutStr("http.method", "GET")
		s.downstreamTail(a, h)
		w := h.p.w
		a.PutStr("istio.namespace", w.namespace)
		a.PutStr("istio.canonical_service", w.app)
		a.PutStr("istio.mesh_id", meshID)
		a.PutStr("istio.canonical_revision", w.revision())
		if s.minor >= 21 {
			a.PutStr("istio.cluster_id", clusterID)
		}
	default:
		a.EnsureCapacity(21)
		s.downstreamHead(a, h)
		s.downstreamTail(a, h)
		s.istioTags(a, h.p.w)
		a.PutStr("http.method", "GET")
		a.PutStr("http.url", h.url)
	}
}

func (s *Sim) downstreamHead(a pcommon.Map, h *hop) {
	a.PutStr("node_id", h.p.w.nodeID())
	a.PutStr("zone", "")
	a.PutStr("guid:x-request-id", h.rid)
}

func (s *Sim) downstreamTail(a pcommon.Map, h *hop) {
	a.PutStr("downstream_cluster", "-")
	a.PutStr("user_agent", h.ua)
	a.PutStr("http.protocol", "HTTP/1.1")
	a.PutStr("peer.address", h.peer)
	a.PutStr("request_size", "0")
	a.PutStr("response_size", h.respSize)
	a.PutStr("component", "proxy")
	s.commonTags(a, h)
}

// commonTags is setCommonTags: the cluster, its observability name, the
// status code and response flags.
func (s *Sim) commonTags(a pcommon.Map, h *hop) {
	a.PutStr("upstream_cluster", h.cluster)
	a.PutStr("upstream_cluster.name", altStatName(h.cluster, s.minor))
	a.PutStr("http.status_code", "200")
	a.PutStr("response_flags", "-")
}

// istioTags are Istio's literal custom tags (buildServiceTags).
func (s *Sim) istioTags(a pcommon.Map, w *workload) {
	if s.minor >= 21 {
		a.PutStr("istio.cluster_id", clusterID)
	}
	a.PutStr("istio.mesh_id", meshID)
	a.PutStr("istio.namespace", w.namespace)
	a.PutStr("istio.canonical_revision", w.revision())
	a.PutStr("istio.canonical_service", w.app)
}
