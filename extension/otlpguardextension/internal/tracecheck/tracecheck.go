// Package tracecheck checks a raw OTLP trace export request (protobuf or
// JSON) against the guard's limits before anything decodes it: how deep
// attribute values nest, how many spans it holds, and whether any one span
// could ever be exported under the backend's request limit.
//
// Both walks are iterative with an explicit stack, so hostile nesting costs
// a bounded stack (the walk stops at the first level over the limit) and no
// goroutine stack growth; neither builds pdata.
package tracecheck // import "github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension/internal/tracecheck"

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits are what a request may hold. A zero limit is not checked.
type Limits struct {
	// MaxValueDepth is the deepest AnyValue nesting allowed: 1 is a plain
	// attribute value, 2 a value inside an array or map value, and so on.
	MaxValueDepth int
	// MaxSpans is the most spans one request may hold.
	MaxSpans int
	// MaxItems is the most repeated elements one request may hold: resource
	// spans, scope spans, spans, events, links, attributes, array and map
	// elements. Each costs a decoded struct however few bytes it has on
	// the wire (an empty attribute is 2 bytes), so it is what bounds the
	// memory a request decodes to.
	MaxItems int
	// MaxSpanBytes is the largest export request one span may need on its
	// own: the span with its resource and scope, as uncompressed protobuf.
	MaxSpanBytes int
}

// Reason says which limit a request broke.
type Reason string

// The reasons, also the `reason` attribute of the guard's metric.
const (
	ValueTooDeep Reason = "value_too_deep"
	TooManySpans Reason = "too_many_spans"
	TooManyItems Reason = "too_many_items"
	SpanTooLarge Reason = "span_too_large"
	Malformed    Reason = "malformed"
)

// Error is a refused request: why, where, and the limit. It never holds
// content of the request (names, values), only field paths and numbers.
type Error struct {
	Reason Reason
	// Path is the field in OTLP field names with indexes, such as
	// resource_spans[0].scope_spans[0].spans[3].attributes[1].value.
	Path string
	// Limit is the limit that was broken, Got what the request had (for
	// ValueTooDeep, Got is the first level over the limit).
	Limit, Got int
	// Detail says more for Malformed.
	Detail string
}

func (e *Error) Error() string {
	switch e.Reason {
	case ValueTooDeep:
		return fmt.Sprintf("attribute value nested deeper than %d levels at %s (the limit is %d; deeper values are refused by common OTLP backends)",
			e.Limit, e.Path, e.Limit)
	case TooManySpans:
		return fmt.Sprintf("request holds more than %d spans (the limit per request is %d; send smaller batches)", e.Limit, e.Limit)
	case TooManyItems:
		return fmt.Sprintf("request holds more than %d items (spans, events, links, attributes, array and map elements; the limit per request is %d; send smaller batches)", e.Limit, e.Limit)
	case SpanTooLarge:
		return fmt.Sprintf("span %s needs %d bytes on its own, over the export limit of %d bytes (OTLP_BACKEND_MAX_REQUEST_BYTES): it could never be delivered",
			e.Path, e.Got, e.Limit)
	default:
		if e.Path == "" {
			return "malformed OTLP request: " + e.Detail
		}
		return "malformed OTLP request at " + e.Path + ": " + e.Detail
	}
}

// Counts is what a request that passed holds.
type Counts struct {
	Spans, Items int
}

// msg is an OTLP trace message type the walks descend into; every other
// field is skipped.
type msg uint8

const (
	mNone msg = iota // a field we do not descend into
	mRequest
	mResourceSpans
	mResource
	mScopeSpans
	mScope
	mSpan
	mEvent
	mLink
	mKeyValue
	mAnyValue
	mArrayValue
	mKeyValueList
)

// field is a child message field: its number, OTLP/JSON names and type.
type field struct {
	num        int
	snake      string
	camel      string
	typ        msg
	repeated   bool
	countIndex int // slot of the frame's per-field counter, for path indexes
}

// fields lists, per message type, the fields that lead to spans or values.
var fields = [...][]field{
	mRequest: {{num: 1, snake: "resource_spans", camel: "resourceSpans", typ: mResourceSpans, repeated: true}},
	mResourceSpans: {
		{num: 1, snake: "resource", typ: mResource},
		{num: 2, snake: "scope_spans", camel: "scopeSpans", typ: mScopeSpans, repeated: true},
		// OTLP's old instrumentation_library_spans: pdata still decodes it
		// (and uses it when scope_spans is empty), so it is walked too.
		{num: 1000, snake: "deprecated_scope_spans", camel: "deprecatedScopeSpans", typ: mScopeSpans, repeated: true, countIndex: 1},
	},
	mResource:   {{num: 1, snake: "attributes", typ: mKeyValue, repeated: true}},
	mScopeSpans: {{num: 1, snake: "scope", typ: mScope}, {num: 2, snake: "spans", typ: mSpan, repeated: true}},
	mScope:      {{num: 3, snake: "attributes", typ: mKeyValue, repeated: true}},
	mSpan: {
		{num: 9, snake: "attributes", typ: mKeyValue, repeated: true},
		{num: 11, snake: "events", typ: mEvent, repeated: true, countIndex: 1},
		{num: 13, snake: "links", typ: mLink, repeated: true, countIndex: 2},
	},
	mEvent:        {{num: 3, snake: "attributes", typ: mKeyValue, repeated: true}},
	mLink:         {{num: 4, snake: "attributes", typ: mKeyValue, repeated: true}},
	mKeyValue:     {{num: 2, snake: "value", typ: mAnyValue}},
	mAnyValue:     {{num: 5, snake: "array_value", camel: "arrayValue", typ: mArrayValue}, {num: 6, snake: "kvlist_value", camel: "kvlistValue", typ: mKeyValueList}},
	mArrayValue:   {{num: 1, snake: "values", typ: mAnyValue, repeated: true}},
	mKeyValueList: {{num: 1, snake: "values", typ: mKeyValue, repeated: true}},
}

func childByNum(parent msg, num int) *field {
	for i := range fields[parent] {
		if fields[parent][i].num == num {
			return &fields[parent][i]
		}
	}
	return nil
}

// childByKey is the field of an OTLP/JSON key: lowerCamelCase or
// snake_case, as the OTLP JSON decoders accept both.
func childByKey(parent msg, key []byte) *field {
	for i := range fields[parent] {
		f := &fields[parent][i]
		if string(key) == f.snake || (f.camel != "" && string(key) == f.camel) {
			return f
		}
	}
	return nil
}

// pathElem is one step of a field path.
type pathElem struct {
	f     *field
	index int
}

// formatPath writes steps as resource_spans[0].scope_spans[0]...; at most
// the first maxSteps steps, so that a path through deep nesting stays short.
func formatPath(steps []pathElem, maxSteps int) string {
	var b strings.Builder
	for i, s := range steps {
		if i == maxSteps {
			break
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.f.snake)
		if s.f.repeated {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		}
	}
	return b.String()
}

// valuePathSteps is how much of a too-deep value's path an error names:
// down to the attribute's value, which is what the sender can find.
func valuePathSteps(steps []pathElem) int {
	for i, s := range steps {
		if s.f.typ == mAnyValue {
			return i + 1
		}
	}
	return len(steps)
}
