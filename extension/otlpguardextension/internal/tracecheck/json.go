package tracecheck // import "github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension/internal/tracecheck"

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

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

// JSON checks an ExportTraceServiceRequest in OTLP/JSON with a streaming
// token walk (encoding/json's Decoder.Token, which does not recurse).
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
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	maxDepth := jsonDepth(lim.MaxValueDepth)
	var stack []jframe
	done := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if !done {
				return &Error{Reason: Malformed, Detail: "empty or truncated JSON"}
			}
			return nil
		}
		if err != nil {
			return jsonMalformed(stack, syntaxDetail(err))
		}
		if done {
			return &Error{Reason: Malformed, Detail: "data after the request object"}
		}
		d, isDelim := tok.(json.Delim)
		if isDelim && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				done = true
				continue
			}
			valueDone(&stack[len(stack)-1])
			continue
		}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			if !top.isArray && top.expectKey {
				// A key (Token returns keys as strings).
				key, _ := tok.(string)
				top.pending, top.expectKey = nil, false
				if top.typ != mNone {
					top.pending = childByName(top.typ, key)
				}
				continue
			}
		}
		if !isDelim {
			if len(stack) == 0 {
				return &Error{Reason: Malformed, Detail: "the request is not a JSON object"}
			}
			valueDone(&stack[len(stack)-1])
			continue
		}
		// '{' or '[': what is this value?
		child := jframe{isArray: d == '[', expectKey: d == '{'}
		if len(stack) == 0 {
			if d != '{' {
				return &Error{Reason: Malformed, Detail: "the request is not a JSON object"}
			}
			child.typ = mRequest
		} else {
			top := &stack[len(stack)-1]
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
	}
}

// valueDone moves the parent of a complete value on to the next key or element.
func valueDone(top *jframe) {
	if top.isArray {
		top.elems++
		return
	}
	top.expectKey, top.pending = true, nil
}

// syntaxDetail says where the JSON broke, without quoting it: the
// decoder's message quotes a character of the request.
func syntaxDetail(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	}
	return "invalid JSON"
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
