package istiospanprocessor // import "github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor"

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/istio"
	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
)

// Resource attributes the normaliser reads and writes.
const (
	attrServiceName      = "service.name"
	attrServiceNamespace = "service.namespace"
	attrServiceVersion   = "service.version"
	attrK8sNamespaceName = "k8s.namespace.name"
	// attrOriginalServiceName keeps the name a proxy sent when it is renamed,
	// so a rename can always be traced back to the mesh configuration.
	attrOriginalServiceName = "istio.original_service_name"
)

// untouchedReason is the `reason` attribute of the spans_untouched metric.
type untouchedReason int

const (
	// reasonAlreadyNormalized: an Istio proxy span whose service.name is
	// already what the format asks for.
	reasonAlreadyNormalized untouchedReason = iota
	// reasonPreserve: format is preserve.
	reasonPreserve
	// reasonNotIstio: no istio.* identity tags and no proxy node_id, e.g. an
	// application SDK span.
	reasonNotIstio
	// reasonNoIstioTags: an Envoy span (node_id sidecar~/router~/waypoint~)
	// without istio.canonical_service/istio.namespace, as when the mesh runs
	// with enableIstioTags: false.
	reasonNoIstioTags
	// reasonMalformedTags: istio.* tags present but missing, empty, not
	// strings, or not valid Kubernetes names.
	reasonMalformedTags
	// reasonInvalidServiceName: the resource's service.name is not a string.
	reasonInvalidServiceName
	numReasons
)

var reasonNames = [numReasons]string{
	reasonAlreadyNormalized:  "already_normalized",
	reasonPreserve:           "preserve",
	reasonNotIstio:           "not_istio",
	reasonNoIstioTags:        "no_istio_tags",
	reasonMalformedTags:      "malformed_istio_tags",
	reasonInvalidServiceName: "invalid_service_name",
}

// nameCounts accumulates one batch's telemetry, recorded once per batch.
type nameCounts struct {
	renamed   int64
	untouched [numReasons]int64
	split     int64
}

// nameNormalizer is step 1 of the processor: one service.name per Istio
// workload, plus semantic-convention resource attributes.
type nameNormalizer struct {
	format    Format
	semconv   bool
	telemetry *metadata.TelemetryBuilder
	// reasonOpts are built once so recording a batch allocates nothing.
	reasonOpts [numReasons][]metric.AddOption
	// targets holds the "C.N" names already built, so that renaming a
	// resource does not allocate the same string again and again.
	targets targetCache
}

// maxCachedTargets bounds targetCache (and the cost of copying it on
// insert); past the bound, names are built per resource as before.
const maxCachedTargets = 1024

// targetCache maps (C, N) to "C.N". It is copy-on-write: lookups, on every
// renamed resource, take no lock; inserts, once per workload, copy the map.
type targetCache struct {
	m  atomic.Pointer[map[workloadKey]string]
	mu sync.Mutex
}

func (tc *targetCache) get(c, n string) string {
	if m := tc.m.Load(); m != nil {
		if t, ok := (*m)[workloadKey{c, n}]; ok {
			return t
		}
	}
	t := c + "." + n
	tc.mu.Lock()
	defer tc.mu.Unlock()
	var old map[workloadKey]string
	if p := tc.m.Load(); p != nil {
		old = *p
	}
	if len(old) >= maxCachedTargets {
		return t
	}
	next := make(map[workloadKey]string, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	// Clone the key: c and n point into the batch, which goes downstream.
	next[workloadKey{strings.Clone(c), strings.Clone(n)}] = t
	tc.m.Store(&next)
	return t
}

func newNameNormalizer(cfg ServiceNameConfig, tb *metadata.TelemetryBuilder) *nameNormalizer {
	n := &nameNormalizer{format: cfg.Format, semconv: cfg.SemconvAttributes, telemetry: tb}
	for r := range numReasons {
		set := attribute.NewSet(attribute.String("reason", reasonNames[r]))
		n.reasonOpts[r] = []metric.AddOption{metric.WithAttributeSet(set)}
	}
	return n
}

// normalize rewrites td in place. It never drops a span.
func (n *nameNormalizer) normalize(ctx context.Context, td ptrace.Traces) {
	n.normalizeEach(ctx, td, nil)
}

// normalizeEach is normalize that also hands each resource, once final, to
// visit (when not nil), in the order of td's resources, so that a later
// step can work on a resource while its spans are still in the CPU cache.
func (n *nameNormalizer) normalizeEach(ctx context.Context, td ptrace.Traces, visit func(ptrace.ResourceSpans)) {
	var c nameCounts
	rss := td.ResourceSpans()
	// Resources split off are appended and already final, so stop at the
	// original length.
	end := rss.Len()
	for i := 0; i < end; i++ {
		n.normalizeResource(rss, rss.At(i), &c)
		if visit != nil {
			visit(rss.At(i))
		}
	}
	if visit != nil {
		for i := end; i < rss.Len(); i++ {
			visit(rss.At(i))
		}
	}
	n.record(ctx, &c)
}

func (n *nameNormalizer) record(ctx context.Context, c *nameCounts) {
	if c.renamed > 0 {
		n.telemetry.ProcessorIstioSpanSpansRenamed.Add(ctx, c.renamed)
	}
	for r, v := range c.untouched {
		if v > 0 {
			n.telemetry.ProcessorIstioSpanSpansUntouched.Add(ctx, v, n.reasonOpts[r]...)
		}
	}
	if c.split > 0 {
		n.telemetry.ProcessorIstioSpanResourcesSplit.Add(ctx, c.split)
	}
}

// group is the set of Istio proxy spans of one resource that share C and N.
type group struct {
	id    istio.Identity
	spans int64
	// revisionAgreed is false when the spans disagree on
	// istio.canonical_revision; service.version is then not set.
	revisionAgreed bool
}

func (g *group) add(id istio.Identity) {
	if g.spans == 0 {
		g.id, g.revisionAgreed = id, true
	} else if id.CanonicalRevision != g.id.CanonicalRevision {
		g.revisionAgreed = false
	}
	g.spans++
}

// normalizeResource handles one ResourceSpans. Envoy sends one resource per
// proxy flush, so all spans normally share C/N and the resource is renamed in
// place; only resources whose spans disagree (possible after other
// processors) take the slower split path.
func (n *nameNormalizer) normalizeResource(rss ptrace.ResourceSpansSlice, rs ptrace.ResourceSpans, c *nameCounts) {
	var g group
	others := false // any span that is not a well-formed Istio proxy span
	mixed := false  // Istio spans disagree on C/N
	sss := rs.ScopeSpans()
	for i := 0; i < sss.Len(); i++ {
		spans := sss.At(i).Spans()
		for j := 0; j < spans.Len(); j++ {
			attrs := spans.At(j).Attributes()
			// The flush's spans share their tags: validate them once.
			id, status := istio.IdentityOfLike(attrs, g.id)
			if status != istio.Proxy {
				others = true
				c.untouched[otherReason(attrs, status)]++
				continue
			}
			if g.spans > 0 && !sameWorkload(id, g.id) {
				mixed = true
			}
			g.add(id)
		}
	}
	switch {
	case g.spans == 0:
		// No Istio spans: the resource passes through untouched.
	case !stringOrAbsent(rs.Resource().Attributes(), attrServiceName):
		// Odd input: neither renamed nor split.
		c.untouched[reasonInvalidServiceName] += g.spans
	case n.format == FormatPreserve && !n.semconv:
		// Nothing to write, so nothing to split: a no-op by configuration.
		c.untouched[reasonPreserve] += g.spans
	case mixed || others:
		n.split(rss, rs, c)
	default:
		n.apply(rs.Resource(), &g, true, c)
	}
}

func stringOrAbsent(attrs pcommon.Map, key string) bool {
	v, ok := attrs.Get(key)
	return !ok || v.Type() == pcommon.ValueTypeStr
}

func sameWorkload(a, b istio.Identity) bool {
	return a.CanonicalService == b.CanonicalService && a.Namespace == b.Namespace
}

func otherReason(attrs pcommon.Map, status istio.TagStatus) untouchedReason {
	if status == istio.Malformed {
		return reasonMalformedTags
	}
	if istio.ProxyKindOf(attrs) != istio.ProxyUnknown {
		return reasonNoIstioTags
	}
	return reasonNotIstio
}

// apply names res for the workload g and adds semconv attributes. When
// nothing needs to change it only reads, so it does not allocate.
// ownName says whether the resource's service.name was given to g's workload,
// which APP_LABEL_AND_NAMESPACE needs to keep an incoming "<x>.N"; it is false
// for split groups that only inherited another workload's name.
func (n *nameNormalizer) apply(res pcommon.Resource, g *group, ownName bool, c *nameCounts) {
	attrs := res.Attributes()
	// Callers have checked that service.name is a string or absent.
	cur, hasName := attrs.Get(attrServiceName)
	old := ""
	if hasName {
		old = cur.Str()
	}
	rename := n.format != FormatPreserve && (!hasName || !n.nameIsRight(old, g.id, ownName))

	var setNamespace, setK8sNamespace, setVersion bool
	if n.semconv {
		_, has := attrs.Get(attrServiceNamespace)
		setNamespace = !has
		_, has = attrs.Get(attrK8sNamespaceName)
		setK8sNamespace = !has
		rev := g.id.CanonicalRevision
		if g.revisionAgreed && rev != "" && rev != istio.DefaultCanonicalRevision {
			_, has = attrs.Get(attrServiceVersion)
			setVersion = !has
		}
	}

	switch {
	case rename:
		c.renamed += g.spans
	case n.format == FormatPreserve:
		c.untouched[reasonPreserve] += g.spans
	default:
		c.untouched[reasonAlreadyNormalized] += g.spans
	}
	if !rename && !setNamespace && !setK8sNamespace && !setVersion {
		return
	}

	// Grow the attribute slice once for everything added below.
	attrs.EnsureCapacity(attrs.Len() + count(rename, setNamespace, setK8sNamespace, setVersion))
	if rename {
		target := n.target(g.id)
		if hasName {
			// cur points into the attribute slice; EnsureCapacity above may
			// have moved it, so look it up again before writing.
			cur, _ = attrs.Get(attrServiceName)
			cur.SetStr(target)
			if _, kept := attrs.Get(attrOriginalServiceName); !kept && old != "" {
				// An earlier rename's original is the true one; keep it.
				attrs.PutStr(attrOriginalServiceName, old)
			}
		} else {
			attrs.PutStr(attrServiceName, target)
		}
	}
	if setNamespace {
		attrs.PutStr(attrServiceNamespace, g.id.Namespace)
	}
	if setK8sNamespace {
		attrs.PutStr(attrK8sNamespaceName, g.id.Namespace)
	}
	if setVersion {
		attrs.PutStr(attrServiceVersion, g.id.CanonicalRevision)
	}
}

// nameIsRight reports whether name already has the configured format for id,
// without building the target string.
func (n *nameNormalizer) nameIsRight(name string, id istio.Identity, ownName bool) bool {
	switch n.format {
	case FormatCanonicalNameOnly:
		return name == id.CanonicalService
	case FormatCanonicalNameAndNamespace:
		return isQualified(name, id.CanonicalService, id.Namespace)
	case FormatAppLabelAndNamespace:
		// "<x>.N" for any non-empty x: the app label is not on the wire, so
		// an incoming name of that form is trusted to be Istio's app name.
		if isQualified(name, id.CanonicalService, id.Namespace) {
			return true
		}
		return ownName && hasDotSuffix(name, id.Namespace)
	default: // FormatPreserve
		return true
	}
}

// target is the name the format asks for. Only called when renaming.
func (n *nameNormalizer) target(id istio.Identity) string {
	if n.format == FormatCanonicalNameOnly {
		return id.CanonicalService
	}
	// CANONICAL_NAME_AND_NAMESPACE, and APP_LABEL_AND_NAMESPACE when the
	// incoming name is not "<x>.N": Istio's canonical name falls back to the
	// app label, so C.N is the best app-label name available.
	return n.targets.get(id.CanonicalService, id.Namespace)
}

// isQualified reports whether name == c + "." + ns.
func isQualified(name, c, ns string) bool {
	return len(name) == len(c)+1+len(ns) && name[:len(c)] == c && hasDotSuffix(name, ns)
}

// hasDotSuffix reports whether name is "<x>." + ns with a non-empty x.
func hasDotSuffix(name, ns string) bool {
	i := len(name) - len(ns) - 1
	return i > 0 && name[i] == '.' && name[i+1:] == ns
}

// count returns how many of bs are true.
func count(bs ...bool) int {
	k := 0
	for _, b := range bs {
		if b {
			k++
		}
	}
	return k
}
