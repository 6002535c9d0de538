package istiospanprocessor // import "github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor"

import (
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/istio"
)

// workloadKey identifies a split group. The zero key holds the spans that
// are not well-formed Istio proxy spans: they must keep their resource as is.
type workloadKey struct{ c, n string }

// split handles a resource whose spans disagree on C/N, or mix Istio proxy
// spans with other spans. Envoy never sends this; it can happen after other
// processors (e.g. groupbyattrs) or in hand-built batches. One group stays
// on the original resource: the non-Istio spans if any, so their resource is
// byte-for-byte unchanged, else the first workload. Every other group moves
// to a copy of the resource (same attributes, schema URL, scopes), appended
// to rss, which is then named for its own workload. Span order within a
// scope is kept; no span is dropped. This path allocates; it is rare.
func (n *nameNormalizer) split(rss ptrace.ResourceSpansSlice, rs ptrace.ResourceSpans, c *nameCounts) {
	c.split++

	// A workload's group, and the resource its spans end up on.
	type dest struct {
		group
		rs ptrace.ResourceSpans
	}
	groups := map[workloadKey]*dest{}
	var order []workloadKey // first-seen order, for deterministic output
	hasOthers := false
	sss := rs.ScopeSpans()
	for i := 0; i < sss.Len(); i++ {
		spans := sss.At(i).Spans()
		for j := 0; j < spans.Len(); j++ {
			id, status := istio.IdentityOf(spans.At(j).Attributes())
			k := keyOf(id, status)
			if k == (workloadKey{}) {
				hasOthers = true
				continue
			}
			d, ok := groups[k]
			if !ok {
				d = &dest{}
				groups[k] = d
				order = append(order, k)
			}
			d.add(id)
		}
	}

	keep := workloadKey{}
	if !hasOthers {
		keep = order[0]
	}

	// Copy the resource before anything renames it.
	for _, k := range order {
		if k == keep {
			groups[k].rs = rs
			continue
		}
		d := rss.AppendEmpty()
		rs.Resource().CopyTo(d.Resource())
		d.SetSchemaUrl(rs.SchemaUrl())
		groups[k].rs = d
	}

	// Move spans scope by scope. A scope left empty by the move is removed
	// from the original (its spans now live under the same scope elsewhere);
	// a scope that arrived empty is kept as it was. (RemoveIf calls f on a
	// scope before it moves or deletes anything.)
	sss.RemoveIf(func(src ptrace.ScopeSpans) bool {
		if src.Spans().Len() == 0 {
			return false
		}
		scopes := map[workloadKey]ptrace.ScopeSpans{}
		src.Spans().RemoveIf(func(s ptrace.Span) bool {
			k := keyOf(istio.IdentityOf(s.Attributes()))
			if k == keep {
				return false
			}
			dst, ok := scopes[k]
			if !ok {
				dst = groups[k].rs.ScopeSpans().AppendEmpty()
				src.Scope().CopyTo(dst.Scope())
				dst.SetSchemaUrl(src.SchemaUrl())
				scopes[k] = dst
			}
			s.MoveTo(dst.Spans().AppendEmpty())
			return true
		})
		return src.Spans().Len() == 0
	})

	owner := nameOwner(rs, order)
	for _, k := range order {
		d := groups[k]
		n.apply(d.rs.Resource(), &d.group, k == owner, c)
	}
}

// keyOf is a span's split group: its workload, or the zero key when it is
// not a well-formed Istio proxy span.
func keyOf(id istio.Identity, status istio.TagStatus) workloadKey {
	if status != istio.Proxy {
		return workloadKey{}
	}
	return workloadKey{id.CanonicalService, id.Namespace}
}

// nameOwner guesses which workload the merged resource's service.name was
// given to, for APP_LABEL_AND_NAMESPACE's "keep an incoming <x>.N" rule: the
// only workload in namespace N. With none or several, no group owns it and
// each is named C.N, rather than one workload taking another's name.
func nameOwner(rs ptrace.ResourceSpans, order []workloadKey) workloadKey {
	v, ok := rs.Resource().Attributes().Get(attrServiceName)
	if !ok {
		return workloadKey{}
	}
	name := v.Str()
	owner, found := workloadKey{}, 0
	for _, k := range order {
		if hasDotSuffix(name, k.n) {
			owner = k
			found++
		}
	}
	if found != 1 {
		return workloadKey{}
	}
	return owner
}
