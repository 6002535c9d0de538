// Package utf8check finds strings in trace data that are not valid UTF-8.
//
// OTLP's protobuf schema declares every string field UTF-8, but the
// collector's decoders do not check it. A backend built on protobuf-go or
// protobuf-java does, and refuses the whole export holding such a string:
// after batching, that export also holds other senders' spans, which are
// then dropped as a permanent error. Finding the string at the receiver
// lets the one sender that sent it be told, instead.
package utf8check // import "github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/utf8check"

import (
	"fmt"
	"strconv"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Error is the first string in a batch that is not valid UTF-8. Its message
// gives the field's OTLP path, with attribute keys quoted (escaped); values
// are never quoted, as they may hold secrets.
type Error struct {
	// Path is the field's location in OTLP/JSON field names, such as
	// `resource_spans[0].scope_spans[0].spans[3].attributes["http.url"]`.
	Path string
}

func (e *Error) Error() string {
	return "invalid UTF-8 in " + e.Path + " (OTLP strings must be valid UTF-8)"
}

// Traces returns an *Error for the first string in td that is not valid
// UTF-8, or nil. It reads every string OTLP carries for a span: names,
// schema URLs, trace states, status messages, and attribute keys and string
// values at any depth. It allocates only when it finds one. Each resource
// is first read in one pass for non-ASCII bytes (ascii.go); only a resource
// that has some is checked string by string.
func Traces(td ptrace.Traces) error {
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		if resourceHighBits(rs)&highBits == 0 {
			continue // all ASCII
		}
		at := func(field string) error {
			return &Error{Path: fmt.Sprintf("resource_spans[%d].%s", i, field)}
		}
		if p, ok := attributes(rs.Resource().Attributes()); !ok {
			return at("resource.attributes" + p)
		}
		if !validString(rs.SchemaUrl()) {
			return at("schema_url")
		}
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			if field, ok := scopeSpans(sss.At(j)); !ok {
				return at(fmt.Sprintf("scope_spans[%d].%s", j, field))
			}
		}
	}
	return nil
}

// scopeSpans checks one scope and its spans; on failure it returns the
// field's path below scope_spans[j].
func scopeSpans(ss ptrace.ScopeSpans) (string, bool) {
	scope := ss.Scope()
	switch {
	case !validString(scope.Name()):
		return "scope.name", false
	case !validString(scope.Version()):
		return "scope.version", false
	case !validString(ss.SchemaUrl()):
		return "schema_url", false
	}
	if p, ok := attributes(scope.Attributes()); !ok {
		return "scope.attributes" + p, false
	}
	spans := ss.Spans()
	for k := 0; k < spans.Len(); k++ {
		if field, ok := span(spans.At(k)); !ok {
			return fmt.Sprintf("spans[%d].%s", k, field), false
		}
	}
	return "", true
}

// span checks one span's own strings, events and links.
func span(s ptrace.Span) (string, bool) {
	switch {
	case !validString(s.Name()):
		return "name", false
	case !validString(s.TraceState().AsRaw()):
		return "trace_state", false
	case !validString(s.Status().Message()):
		return "status.message", false
	}
	if p, ok := attributes(s.Attributes()); !ok {
		return "attributes" + p, false
	}
	events := s.Events()
	for e := 0; e < events.Len(); e++ {
		ev := events.At(e)
		if !validString(ev.Name()) {
			return fmt.Sprintf("events[%d].name", e), false
		}
		if p, ok := attributes(ev.Attributes()); !ok {
			return fmt.Sprintf("events[%d].attributes%s", e, p), false
		}
	}
	links := s.Links()
	for l := 0; l < links.Len(); l++ {
		link := links.At(l)
		if !validString(link.TraceState().AsRaw()) {
			return fmt.Sprintf("links[%d].trace_state", l), false
		}
		if p, ok := attributes(link.Attributes()); !ok {
			return fmt.Sprintf("links[%d].attributes%s", l, p), false
		}
	}
	return "", true
}

// attributes checks keys and values; on failure it returns the path below
// the map: `["key"]` for a bad value, `[i] key "k\xff"` for a bad key.
func attributes(m pcommon.Map) (string, bool) {
	i := 0
	for k, v := range m.All() {
		if !validString(k) {
			return fmt.Sprintf("[%d] key %s", i, strconv.Quote(k)), false
		}
		if p, ok := value(v); !ok {
			return "[" + strconv.Quote(k) + "]" + p, false
		}
		i++
	}
	return "", true
}

// value checks a string value, or the strings nested in a map or array.
func value(v pcommon.Value) (string, bool) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		if !validString(v.Str()) {
			return "", false
		}
	case pcommon.ValueTypeMap:
		return attributes(v.Map())
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		for i := 0; i < s.Len(); i++ {
			if p, ok := value(s.At(i)); !ok {
				return fmt.Sprintf("[%d]%s", i, p), false
			}
		}
	}
	return "", true
}
