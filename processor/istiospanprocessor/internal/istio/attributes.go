// Package istio names the attributes Istio's Envoy proxies put on spans and
// classifies which proxy emitted a span. It is the one place that knows the
// wire shape described in shared/docs/istio-tracing.md; the normalising and
// orphan-detecting code both read spans through it.
package istio

import (
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Span attributes (Envoy tags). Envoy sends every one of them as a string.
const (
	AttrCanonicalService  = "istio.canonical_service"
	AttrCanonicalRevision = "istio.canonical_revision"
	AttrNamespace         = "istio.namespace"
	AttrNodeID            = "node_id"
	AttrRequestID         = "guid:x-request-id"
	AttrUpstreamCluster   = "upstream_cluster"
)

// DefaultCanonicalRevision is what Istio reports when a pod has no version
// label; it carries no information, so it is never promoted to service.version.
const DefaultCanonicalRevision = "latest"

// ProxyKind is the kind of Envoy proxy that emitted a span, read from the
// prefix of its node_id (sidecar~, router~, waypoint~).
type ProxyKind int

const (
	// ProxyUnknown: no node_id, or one with an unknown prefix. Gateway router
	// child spans (spawn_upstream_span) have no node_id and land here.
	ProxyUnknown ProxyKind = iota
	ProxySidecar
	ProxyGateway
	ProxyWaypoint
)

// ProxyKindOf classifies a span's emitting proxy from its node_id attribute.
func ProxyKindOf(attrs pcommon.Map) ProxyKind {
	v, ok := attrs.Get(AttrNodeID)
	if !ok || v.Type() != pcommon.ValueTypeStr {
		return ProxyUnknown
	}
	return ProxyKindOfNodeID(v.Str())
}

// ProxyKindOfNodeID classifies a node_id value already read from a span, for
// callers that gather several tags in one pass over the attributes.
func ProxyKindOfNodeID(id string) ProxyKind {
	switch {
	case strings.HasPrefix(id, "sidecar~"):
		return ProxySidecar
	case strings.HasPrefix(id, "router~"):
		return ProxyGateway
	case strings.HasPrefix(id, "waypoint~"):
		return ProxyWaypoint
	}
	return ProxyUnknown
}

// StringAttr returns a string attribute's value, and false when it is missing,
// not a string, or empty: Istio never sends these tags with another type, so
// anything else is odd input to be left alone.
func StringAttr(attrs pcommon.Map, key string) (string, bool) {
	v, ok := attrs.Get(key)
	if !ok || v.Type() != pcommon.ValueTypeStr || v.Str() == "" {
		return "", false
	}
	return v.Str(), true
}
