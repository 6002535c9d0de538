package utf8check

import (
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// replacement is what each invalid byte sequence becomes, as
// strings.ToValidUTF8 and most UTF-8 decoders do it.
const replacement = "\uFFFD"

// Repair makes every string Traces checks valid UTF-8, replacing each run
// of invalid bytes with U+FFFD, and returns how many strings it changed.
// A key repaired into one the map already has is dropped: the attribute
// that was sent valid wins. It is meant for the rare batch Traces refused,
// so it favors being simple over being fast.
func Repair(td ptrace.Traces) int {
	r := repairer{}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		r.attributes(rs.Resource().Attributes())
		rs.SetSchemaUrl(r.str(rs.SchemaUrl()))
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			scope := ss.Scope()
			scope.SetName(r.str(scope.Name()))
			scope.SetVersion(r.str(scope.Version()))
			ss.SetSchemaUrl(r.str(ss.SchemaUrl()))
			r.attributes(scope.Attributes())
			spans := ss.Spans()
			for k := 0; k < spans.Len(); k++ {
				r.span(spans.At(k))
			}
		}
	}
	return r.changed
}

type repairer struct{ changed int }

// str returns s repaired, counting a change.
func (r *repairer) str(s string) string {
	if validString(s) {
		return s
	}
	r.changed++
	return strings.ToValidUTF8(s, replacement)
}

func (r *repairer) span(s ptrace.Span) {
	s.SetName(r.str(s.Name()))
	if ts := s.TraceState().AsRaw(); !validString(ts) {
		s.TraceState().FromRaw(r.str(ts))
	}
	s.Status().SetMessage(r.str(s.Status().Message()))
	r.attributes(s.Attributes())
	events := s.Events()
	for e := 0; e < events.Len(); e++ {
		ev := events.At(e)
		ev.SetName(r.str(ev.Name()))
		r.attributes(ev.Attributes())
	}
	links := s.Links()
	for l := 0; l < links.Len(); l++ {
		link := links.At(l)
		if ts := link.TraceState().AsRaw(); !validString(ts) {
			link.TraceState().FromRaw(r.str(ts))
		}
		r.attributes(link.Attributes())
	}
}

// attributes repairs values in place, then re-keys the entries whose key
// is invalid (a map cannot rename a key while it is being ranged over).
func (r *repairer) attributes(m pcommon.Map) {
	var badKeys []string
	for k, v := range m.All() {
		if !validString(k) {
			badKeys = append(badKeys, k)
		}
		r.value(v)
	}
	for _, k := range badKeys {
		v, _ := m.Get(k)
		kept := pcommon.NewValueEmpty()
		v.CopyTo(kept)
		m.Remove(k)
		fixed := r.str(k)
		if _, exists := m.Get(fixed); !exists {
			kept.CopyTo(m.PutEmpty(fixed))
		}
	}
}

func (r *repairer) value(v pcommon.Value) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		if s := v.Str(); !validString(s) {
			v.SetStr(r.str(s))
		}
	case pcommon.ValueTypeMap:
		r.attributes(v.Map())
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		for i := 0; i < s.Len(); i++ {
			r.value(s.At(i))
		}
	}
}
