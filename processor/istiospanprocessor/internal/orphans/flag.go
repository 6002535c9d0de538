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
	nameRead    bool
	name        string
}

// serviceName is the (already normalised) resource service.name, read once.
func (rv *resourceView) serviceName() string {
	if !rv.nameRead {
		rv.nameRead = true
		rv.name, _ = istio.StringAttr(rv.rs.Resource().Attributes(), resAttrServiceName)
	}
	return rv.name
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

// spanTags are the Envoy tags the rules read, found in one pass over the
// span's attributes (Envoy sends about twenty; a lookup per tag would scan
// them several times). Values are read only when a rule needs them: on a
// freshly received batch each read is a likely cache miss.
type spanTags struct {
	nodeID, upstreamCluster, requestID, canonical, namespace tag
}

// tag is one attribute found by readTags.
type tag struct {
	v  pcommon.Value
	ok bool
}

// str is the tag's value; "" when it is missing or not a string.
func (t tag) str() string {
	if !t.ok || t.v.Type() != pcommon.ValueTypeStr {
		return ""
	}
	return t.v.Str()
}

// readTags scans attrs for the tags. With full false it stops as soon as it
// has a node_id and, when wantRequestID, a request id: with node_id present
// no other tag is needed (canonical service and namespace matter only for
// origins, and upstream_cluster only without node_id). Without node_id the
// scan runs to the end and finds everything.
func readTags(attrs pcommon.Map, full, wantRequestID bool) spanTags {
	var t spanTags
	nodeOK := false // a non-empty string node_id: an empty one counts as missing
	for k, v := range attrs.All() {
		switch k {
		case istio.AttrNodeID:
			t.nodeID = tag{v, true}
			nodeOK = t.nodeID.str() != ""
		case istio.AttrUpstreamCluster:
			t.upstreamCluster = tag{v, true}
		case istio.AttrRequestID:
			t.requestID = tag{v, true}
		case istio.AttrCanonicalService:
			t.canonical = tag{v, true}
		case istio.AttrNamespace:
			t.namespace = tag{v, true}
		default:
			continue
		}
		if !full && nodeOK && (t.requestID.ok || !wantRequestID) {
			break
		}
	}
	return t
}

// fromSidecar reports whether a span was emitted by a sidecar on the side
// given by clusterPrefix ("outbound|" for CLIENT, "inbound|" for SERVER).
// node_id decides when present; when it is missing, the upstream cluster's
// direction and the workload not being a gateway decide instead.
func fromSidecar(t *spanTags, span ptrace.Span, rv *resourceView, clusterPrefix string) bool {
	if t.nodeID.ok {
		id := t.nodeID.str()
		if id != "" || t.nodeID.v.Type() != pcommon.ValueTypeStr {
			// An odd or unknown node_id is not a sidecar's.
			return istio.ProxyKindOfNodeID(id) == istio.ProxySidecar
		}
		// An empty node_id counts as missing.
	}
	if !strings.HasPrefix(t.upstreamCluster.str(), clusterPrefix) {
		return false
	}
	return !isGatewayWorkload(t, span, rv)
}

// isGatewayWorkload is the node_id-less gateway test. Signals, strongest
// first: the spawn_upstream_span router shape ("router <cluster> egress",
// which Istio only turns on for gateways), a router~ node_id elsewhere in the
// same flush, and finally the workload's name containing "gateway"
// (istio-ingressgateway, istio-egressgateway; a Gateway-API deployment is
// "<gateway name>-istio"), the convention Istio's own tests use to tell
// gateway roots from client roots.
func isGatewayWorkload(t *spanTags, span ptrace.Span, rv *resourceView) bool {
	name := span.Name()
	if strings.HasPrefix(name, "router ") && strings.HasSuffix(name, " egress") {
		return true
	}
	if rv.gatewayNodeInFlush() {
		return true
	}
	if c := t.canonical.str(); c != "" {
		return strings.Contains(c, "gateway")
	}
	return strings.Contains(rv.serviceName(), "gateway")
}

// markOrphan writes the orphan attributes, leaving a span that already has them
// untouched so that processing a batch twice changes nothing.
func markOrphan(attrs pcommon.Map) {
	flag, hasFlag := attrs.Get(AttrOrphan)
	reason, hasReason := attrs.Get(AttrOrphanReason)
	setFlag := !hasFlag || flag.Type() != pcommon.ValueTypeBool || !flag.Bool()
	setReason := !hasReason || reason.Type() != pcommon.ValueTypeStr || reason.Str() != ReasonMissingTraceContext
	// Grow the attribute slice once, by exactly what is added: left to
	// append, the first Put would double Envoy's ~20 tags, which made this
	// the bulk of the bytes the processor allocates on orphan traffic.
	if add := btoi(!hasFlag) + btoi(!hasReason); add > 0 {
		attrs.EnsureCapacity(attrs.Len() + add)
	}
	// The Puts look the keys up again: flag and reason may point into the
	// slice EnsureCapacity replaced.
	if setFlag {
		attrs.PutBool(AttrOrphan, true)
	}
	if setReason {
		attrs.PutStr(AttrOrphanReason, ReasonMissingTraceContext)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
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

func (o originSet) empty() bool { return len(o.names) == 0 }

// match reports whether the span's workload is an origin. Names are the
// canonical service (istio.canonical_service) and the normalised resource
// service.name; namespaces are istio.namespace and the resource
// service.namespace.
func (o originSet) match(t *spanTags, rv *resourceView) bool {
	if len(o.names) == 0 {
		return false
	}
	resNS, _ := istio.StringAttr(rv.rs.Resource().Attributes(), resAttrServiceNamespace)
	ns := t.namespace.str()
	for _, n := range [2]string{t.canonical.str(), rv.serviceName()} {
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
