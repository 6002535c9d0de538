package tracecheck // import "github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension/internal/tracecheck"

import (
	"encoding/json"
	"fmt"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// jframe is one open JSON object or array of the JSON walk.
type jframe struct {
	typ       msg    // object: its message type; array: its elements' type
	arr       *field // array: the repeated field it is the value of
	isArray   bool
	expectKey bool   // object: the next string is a key
	pending   *field // object: the field whose value comes next
	elems     int    // array: elements so far
	anyDepth  int
	step      pathElem
}

// jsonDepth is the deepest JSON nesting allowed for values limit levels
// deep: each map level is four JSON levels ({"kvlistValue":{"values":[{),
// and the request, resource spans, scope spans, span and attribute above
// the first value are fewer than 16. It also bounds nesting inside fields
// the walk does not know, which the decoder skips.
func jsonDepth(limit int) int {
	if limit <= 0 {
		return 10000 // encoding/json's own limit
	}
	return 4*limit + 16
}

// JSON checks an ExportTraceServiceRequest in OTLP/JSON with a byte scanner
// that tracks objects, arrays and keys on an explicit stack (no recursion,
// no allocation beyond the stack); the decoder checks the rest of the
// syntax.
// Field names are accepted in lowerCamelCase and snake_case, as the OTLP
// JSON decoders accept them. MaxSpanBytes is checked only for bodies
// larger than it (a span's protobuf encoding is never larger than its
// JSON), by decoding the request, which the walk has by then bounded, and
// checking its protobuf encoding.
func JSON(b []byte, lim Limits) (Counts, *Error) {
	var c Counts
	if err := jsonWalk(b, lim, &c); err != nil {
		return c, err
	}
	if lim.MaxSpanBytes <= 0 || len(b) <= lim.MaxSpanBytes {
		return c, nil
	}
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(b)
	if err != nil {
		return c, &Error{Reason: Malformed, Detail: "invalid OTLP/JSON"}
	}
	pb, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		return c, &Error{Reason: Malformed, Detail: "cannot encode as protobuf"}
	}
	_, err2 := Proto(pb, Limits{MaxSpanBytes: lim.MaxSpanBytes})
	return c, err2
}

func jsonWalk(b []byte, lim Limits, c *Counts) *Error {
	maxDepth := jsonDepth(lim.MaxValueDepth)
	var stack []jframe
	done := false
	for i := 0; ; {
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i == len(b) {
			if !done {
				return &Error{Reason: Malformed, Detail: "empty or truncated JSON"}
			}
			return nil
		}
		if done {
			return &Error{Reason: Malformed, Detail: fmt.Sprintf("data after the request object at byte %d", i)}
		}
		var top *jframe
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		switch ch := b[i]; ch {
		case ',', ':':
			// The frames track keys and values; the decoder checks the
			// punctuation between them.
			i++
		case '}', ']':
			if top == nil || top.isArray != (ch == ']') {
				return jsonMalformed(stack, fmt.Sprintf("unexpected %q at byte %d", ch, i))
			}
			i++
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				done = true
				continue
			}
			valueDone(&stack[len(stack)-1])
		case '"':
			end, escaped := scanString(b, i)
			if end < 0 {
				return jsonMalformed(stack, fmt.Sprintf("bad string at byte %d", i))
			}
			if top == nil {
				return &Error{Reason: Malformed, Detail: "the request is not a JSON object"}
			}
			if !top.isArray && top.expectKey {
				top.pending, top.expectKey = nil, false
				if top.typ != mNone {
					key := b[i+1 : end-1]
					if escaped {
						// Rare: decode the key as the OTLP decoders do.
						var k string
						if err := json.Unmarshal(b[i:end], &k); err != nil {
							return jsonMalformed(stack, fmt.Sprintf("bad key at byte %d", i))
						}
						key = []byte(k)
					}
					top.pending = childByKey(top.typ, key)
				}
			} else {
				valueDone(top)
			}
			i = end
		case '{', '[':
			d := ch
			child := jframe{isArray: d == '[', expectKey: d == '{'}
			if top == nil {
				if d != '{' {
					return &Error{Reason: Malformed, Detail: "the request is not a JSON object"}
				}
				child.typ = mRequest
			} else {
				if !top.isArray && top.expectKey {
					return jsonMalformed(stack, fmt.Sprintf("object key expected at byte %d", i))
				}
				child.anyDepth = top.anyDepth
				var f *field
				index := -1
				if top.isArray {
					f, index = top.arr, top.elems
				} else {
					f = top.pending
				}
				switch {
				case f == nil:
				case d == '[' && f.repeated && !top.isArray:
					child.arr, child.typ = f, f.typ
				case d == '{' && (f.repeated == top.isArray):
					child.typ, child.step = f.typ, pathElem{f: f, index: index}
					if f.repeated {
						c.Items++
						if lim.MaxItems > 0 && c.Items > lim.MaxItems {
							return &Error{Reason: TooManyItems, Limit: lim.MaxItems, Got: c.Items}
						}
					}
				}
				if d == '{' {
					switch child.typ {
					case mAnyValue:
						child.anyDepth++
						if lim.MaxValueDepth > 0 && child.anyDepth > lim.MaxValueDepth {
							s := jsonSteps(append(stack, child))
							return &Error{Reason: ValueTooDeep, Limit: lim.MaxValueDepth, Got: lim.MaxValueDepth + 1, Path: formatPath(s, valuePathSteps(s))}
						}
					case mSpan:
						c.Spans++
						if lim.MaxSpans > 0 && c.Spans > lim.MaxSpans {
							return &Error{Reason: TooManySpans, Limit: lim.MaxSpans, Got: c.Spans}
						}
					}
				}
			}
			if len(stack)+1 > maxDepth {
				s := jsonSteps(stack)
				return &Error{Reason: ValueTooDeep, Limit: lim.MaxValueDepth, Got: lim.MaxValueDepth + 1, Path: formatPath(s, valuePathSteps(s))}
			}
			stack = append(stack, child)
			i++
		default:
			// A number or a literal: up to the next delimiter.
			start := i
			for i < len(b) && !isSpace(b[i]) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ':' {
				i++
			}
			if top == nil || (!top.isArray && top.expectKey) {
				return jsonMalformed(stack, fmt.Sprintf("unexpected value at byte %d", start))
			}
			valueDone(top)
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// scanString returns the index after the string starting at b[i] (a
// quote) and whether it has escapes; -1 when it is not terminated or holds
// a control character.
func scanString(b []byte, i int) (end int, escaped bool) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped
		case c == '\\':
			escaped = true
			j++
		case c < 0x20:
			return -1, false
		}
	}
	return -1, false
}

// valueDone moves the parent of a complete value on to the next key or element.
func valueDone(top *jframe) {
	if top.isArray {
		top.elems++
		return
	}
	top.expectKey, top.pending = true, nil
}

func jsonSteps(stack []jframe) []pathElem {
	var out []pathElem
	for _, f := range stack {
		if f.step.f != nil {
			out = append(out, f.step)
		}
	}
	return out
}

func jsonMalformed(stack []jframe, detail string) *Error {
	s := jsonSteps(stack)
	return &Error{Reason: Malformed, Detail: detail, Path: formatPath(s, min(len(s), 12))}
}
