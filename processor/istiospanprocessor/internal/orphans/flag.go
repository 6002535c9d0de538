package orphans

import (
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/istio"
)

// Attributes and values this package writes.
const (
	// AttrOrphan marks a span as an orphaned root (bool true).
	AttrOrphan = "istio.orphan"
	// AttrOrphanReason says why it was flagged.
	AttrOrphanReason = "istio.orphan.reason"
	// ReasonMissingTraceContext: the app did not forward traceparent, so its
	// sidecar started a new trace for the outbound request.
	ReasonMissingTraceContext = "missing_trace_context"
	// AttrLinkReason is set on every span link this package adds.
	AttrLinkReason = "istio.link.reason"
	// LinkReasonRequestID: the two spans share guid:x-request-id.
	LinkReasonRequestID = "x-request-id"
)

// Cluster-name prefixes Istio gives sidecar listeners' clusters; they only
// decide the side when node_id is missing.
const (
	outboundClusterPrefix = "outbound|"
	inboundClusterPrefix  = "inbound|"
)

// Resource attributes read besides the span's Istio tags.
const (
	resAttrServiceName      = "service.name"
	resAttrServiceNamespace = "service.namespace"
)

// resourceView holds what the rules need from one ResourceSpans (one proxy
// flush). The scan for gateway node_ids is done at most once and only when a
// span without node_id needs it.
type resourceView struct {
	rs          ptrace.ResourceSpans
	scanned     bool
	hasGatewayN bool
}

// serviceName is the (already normalised) resource service.name.
func (rv *resourceView) serviceName() string {
	if s, ok := istio.StringAttr(rv.rs.Resource().Attributes(), resAttrServiceName); ok {
		return s
	}
	return ""
}

// gatewayNodeInFlush reports whether any span of this flush carries a
// router~ node_id: Envoy sends one resource per proxy, so one such span
// makes every span of the resource a gateway span.
func (rv *resourceView) gatewayNodeInFlush() bool {
	if rv.scanned {
		return rv.hasGatewayN
	}
	rv.scanned = true
	sss := rv.rs.ScopeSpans()
	for i := 0; i < sss.Len(); i++ {
		spans := sss.At(i).Spans()
		for j := 0; j < spans.Len(); j++ {
			if istio.ProxyKindOf(spans.At(j).Attributes()) == istio.ProxyGateway {
				rv.hasGatewayN = true
				return true
			}
		}
	}
	return false
}

// fromSidecar reports whether span was emitted by a sidecar on the side given
// by clusterPrefix ("outbound|" for CLIENT, "inbound|" for SERVER). node_id
// decides when present; when it is missing, the upstream cluster's direction
// and the workload not being a gateway decide instead.
func fromSidecar(span ptrace.Span, rv *resourceView, clusterPrefix string) bool {
	attrs := span.Attributes()
	switch istio.ProxyKindOf(attrs) {
	case istio.ProxySidecar:
		return true
	case istio.ProxyGateway, istio.ProxyWaypoint:
		return false
	}
	if v, ok := attrs.Get(istio.AttrNodeID); ok && (v.Type() != pcommon.ValueTypeStr || v.Str() != "") {
		// A node_id we do not recognise is not a sidecar's.
		return false
	}
	uc, ok := istio.StringAttr(attrs, istio.AttrUpstreamCluster)
	if !ok || !strings.HasPrefix(uc, clusterPrefix) {
		return false
	}
	return !isGatewayWorkload(span, rv)
}

// isGatewayWorkload is the node_id-less gateway test. Signals, strongest
// first: the spawn_upstream_span router shape ("router <cluster> egress",
// which Istio only turns on for gateways), a router~ node_id elsewhere in the
// same flush, and finally the workload's name containing "gateway"
// (istio-ingressgateway, istio-egressgateway, <name>-gateway-istio), the
// convention Istio's own tests use to tell gateway roots from client roots.
func isGatewayWorkload(span ptrace.Span, rv *resourceView) bool {
	name := span.Name()
	if strings.HasPrefix(name, "router ") && strings.HasSuffix(name, " egress") {
		return true
	}
	if rv.gatewayNodeInFlush() {
		return true
	}
	if c, ok := istio.StringAttr(span.Attributes(), istio.AttrCanonicalService); ok {
		return strings.Contains(c, "gateway")
	}
	return strings.Contains(rv.serviceName(), "gateway")
}

// markOrphan writes the orphan attributes, leaving a span that already has them
// untouched so that processing a batch twice changes nothing.
func markOrphan(attrs pcommon.Map) {
	if v, ok := attrs.Get(AttrOrphan); !ok || v.Type() != pcommon.ValueTypeBool || !v.Bool() {
		attrs.PutBool(AttrOrphan, true)
	}
	if v, ok := attrs.Get(AttrOrphanReason); !ok || v.Type() != pcommon.ValueTypeStr || v.Str() != ReasonMissingTraceContext {
		attrs.PutStr(AttrOrphanReason, ReasonMissingTraceContext)
	}
}

// originSet matches workloads listed in orphans.origins.
type originSet struct {
	// names holds every entry verbatim: "loadgen" matches a canonical
	// service or service.name "loadgen", "loadgen.tools" a service.name
	// "loadgen.tools".
	names map[string]struct{}
	// pairs holds "name.namespace" entries split at the last dot, matched
	// against (canonical service or service.name, namespace).
	pairs map[[2]string]struct{}
}

func newOriginSet(origins []string) originSet {
	o := originSet{names: map[string]struct{}{}, pairs: map[[2]string]struct{}{}}
	for _, s := range origins {
		o.names[s] = struct{}{}
		if i := strings.LastIndexByte(s, '.'); i > 0 && i < len(s)-1 {
			o.pairs[[2]string{s[:i], s[i+1:]}] = struct{}{}
		}
	}
	return o
}

// match reports whether the span's workload is an origin. Names are the
// canonical service (istio.canonical_service) and the normalised resource
// service.name; namespaces are istio.namespace and the resource
// service.namespace.
func (o originSet) match(span ptrace.Span, rv *resourceView) bool {
	if len(o.names) == 0 {
		return false
	}
	attrs := span.Attributes()
	res := rv.rs.Resource().Attributes()
	canonical, _ := istio.StringAttr(attrs, istio.AttrCanonicalService)
	svc, _ := istio.StringAttr(res, resAttrServiceName)
	ns, _ := istio.StringAttr(attrs, istio.AttrNamespace)
	resNS, _ := istio.StringAttr(res, resAttrServiceNamespace)
	for _, n := range [2]string{canonical, svc} {
		if n == "" {
			continue
		}
		if _, ok := o.names[n]; ok {
			return true
		}
		for _, s := range [2]string{ns, resNS} {
			if s == "" {
				continue
			}
			if _, ok := o.pairs[[2]string{n, s}]; ok {
				return true
			}
		}
	}
	return false
}
