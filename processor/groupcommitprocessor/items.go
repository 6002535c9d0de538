package groupcommitprocessor // import "github.com/otelcol-istio/otelcol-istio/processor/groupcommitprocessor"

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// itemsOf counts td's items as otlp_guard's max_items_per_request does:
// resource spans, scope spans, spans, events, links, attributes (of
// resources, scopes, spans, events and links), and the elements of array
// and map values at any depth. Each decodes into a struct of its own
// whatever its wire size, so items, not bytes, bound a decoded request's
// memory.
func itemsOf(td ptrace.Traces) int {
	rss := td.ResourceSpans()
	n := rss.Len()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		n += mapItems(rs.Resource().Attributes())
		sss := rs.ScopeSpans()
		n += sss.Len()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			n += mapItems(ss.Scope().Attributes())
			spans := ss.Spans()
			n += spans.Len()
			for k := 0; k < spans.Len(); k++ {
				s := spans.At(k)
				n += mapItems(s.Attributes())
				events := s.Events()
				n += events.Len()
				for e := 0; e < events.Len(); e++ {
					n += mapItems(events.At(e).Attributes())
				}
				links := s.Links()
				n += links.Len()
				for l := 0; l < links.Len(); l++ {
					n += mapItems(links.At(l).Attributes())
				}
			}
		}
	}
	return n
}

// mapItems is a map's entries plus the elements nested in their values.
func mapItems(m pcommon.Map) int {
	n := m.Len()
	for _, v := range m.All() {
		n += valueItems(v)
	}
	return n
}

// valueItems is the elements nested in v (0 for a scalar).
func valueItems(v pcommon.Value) int {
	switch v.Type() {
	case pcommon.ValueTypeMap:
		return mapItems(v.Map())
	case pcommon.ValueTypeSlice:
		sl := v.Slice()
		n := sl.Len()
		for i := 0; i < sl.Len(); i++ {
			n += valueItems(sl.At(i))
		}
		return n
	}
	return 0
}
