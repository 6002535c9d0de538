package tracecheck // import "github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension/internal/tracecheck"

import (
	"fmt"
	"math/bits"
)

// pframe is one open message of the protobuf walk.
type pframe struct {
	typ        msg
	start, end int // the message's bytes
	anyDepth   int // AnyValue messages on the path, this one included
	step       pathElem
	counts     [3]int // indexes of repeated children, by field.countIndex

	// Sizes for MaxSpanBytes, as pdata encodes the message (the exporter
	// encodes with pdata): delta is what pdata's encoding adds to the wire
	// bytes, as it always writes some fields (span ids and status, link
	// ids, a key's value, scope, resource) that a sender may leave out;
	// seen has a bit for each field number under 32 present on the wire.
	// In a ScopeSpans: the encoded bytes of its span fields and its largest
	// span. In a ResourceSpans: the encoded bytes of its scope_spans
	// fields, and the largest one-span ScopeSpans it could send.
	delta      int
	seen       uint32
	childBytes int
	maxChild   int // -1 until a span (scope) is seen
	maxIdx     int // index of that span (ScopeSpans) or scope_spans (ResourceSpans)
	maxSpanIdx int // ResourceSpans: index of the span within that scope_spans
}

// alwaysEncoded are the fields pdata writes even when empty (2 bytes
// each: a one-byte tag and a zero length), by message type.
var alwaysEncoded = [...]uint32{
	mSpan:          1<<1 | 1<<2 | 1<<4 | 1<<15, // trace_id, span_id, parent_span_id, status
	mLink:          1<<1 | 1<<2,                // trace_id, span_id
	mKeyValue:      1 << 2,                     // value
	mScopeSpans:    1 << 1,                     // scope
	mResourceSpans: 1 << 1,                     // resource
	mKeyValueList:  0,
}

// Proto checks an ExportTraceServiceRequest in the protobuf wire format. It
// reads each byte once, allocates only its stack (at most MaxValueDepth
// levels of values plus the fixed levels above them) and stops at the
// first broken limit. Malformed wire data is an error too: the decoder
// would refuse it anyway, and refusing it here keeps this walk the only
// place that reads unchecked nesting.
func Proto(b []byte, lim Limits) (Counts, *Error) {
	var c Counts
	err := protoWalk(b, lim, &c)
	return c, err
}

func protoWalk(b []byte, lim Limits, c *Counts) *Error {
	stack := make([]pframe, 1, 16)
	stack[0] = pframe{typ: mRequest, end: len(b), maxChild: -1}
	p := 0
	for {
		top := &stack[len(stack)-1]
		if p == top.end {
			if len(stack) == 1 {
				return nil
			}
			if err := closeFrame(stack, lim); err != nil {
				return err
			}
			stack = stack[:len(stack)-1]
			continue
		}
		tag, n := uvarint(b[p:top.end])
		if n <= 0 {
			return malformed(stack, "bad field tag")
		}
		p += n
		num, wire := tag>>3, tag&7
		if num == 0 || num > 1<<29-1 {
			return malformed(stack, "field number out of range")
		}
		if num < 32 {
			top.seen |= 1 << num
		}
		switch wire {
		case 0:
			_, n := uvarint(b[p:top.end])
			if n <= 0 {
				return malformed(stack, "bad varint")
			}
			p += n
		case 1, 5:
			w := 8
			if wire == 5 {
				w = 4
			}
			if top.end-p < w {
				return malformed(stack, "truncated fixed-width field")
			}
			p += w
		case 2:
			l, n := uvarint(b[p:top.end])
			if n <= 0 || l > uint64(top.end-p-n) { //nolint:gosec // G115: top.end-p-n >= 0, the varint was read inside the message
				return malformed(stack, fmt.Sprintf("field %d: length beyond its message", num))
			}
			p += n
			f := childByNum(top.typ, int(num))
			if f == nil {
				p += int(l) //nolint:gosec // G115: l is bounded by the message's length, checked above
				continue
			}
			child := pframe{typ: f.typ, start: p, end: p + int(l), anyDepth: top.anyDepth, maxChild: -1, step: pathElem{f: f, index: -1}} //nolint:gosec // G115: l is bounded by the message's length, checked above
			if f.repeated {
				child.step.index = top.counts[f.countIndex]
				top.counts[f.countIndex]++
				c.Items++
				if lim.MaxItems > 0 && c.Items > lim.MaxItems {
					return &Error{Reason: TooManyItems, Limit: lim.MaxItems, Got: c.Items}
				}
			}
			switch f.typ {
			case mAnyValue:
				child.anyDepth++
				if lim.MaxValueDepth > 0 && child.anyDepth > lim.MaxValueDepth {
					return tooDeep(stack, child.step, lim.MaxValueDepth)
				}
			case mSpan:
				c.Spans++
				if lim.MaxSpans > 0 && c.Spans > lim.MaxSpans {
					return &Error{Reason: TooManySpans, Limit: lim.MaxSpans, Got: c.Spans}
				}
			}
			stack = append(stack, child)
		default:
			return malformed(stack, fmt.Sprintf("field %d: unsupported wire type %d", num, wire))
		}
	}
}

// closeFrame folds the encoded size of the frame on top of stack into its
// parent, and checks MaxSpanBytes when a ResourceSpans is complete.
func closeFrame(stack []pframe, lim Limits) *Error {
	c, parent := &stack[len(stack)-1], &stack[len(stack)-2]
	if int(c.typ) < len(alwaysEncoded) {
		c.delta += 2 * bits.OnesCount32(alwaysEncoded[c.typ]&^c.seen)
	}
	wire := c.end - c.start
	n := wire + c.delta // as pdata encodes it
	parent.delta += fieldSize(n) - fieldSize(wire)
	switch c.typ {
	case mSpan:
		parent.childBytes += fieldSize(n)
		if n > parent.maxChild {
			parent.maxChild, parent.maxIdx = n, c.step.index
		}
	case mScopeSpans:
		parent.childBytes += fieldSize(n)
		if c.maxChild < 0 {
			return nil
		}
		// This scope_spans with only its largest span in it.
		one := n - c.childBytes + fieldSize(c.maxChild)
		if one > parent.maxChild {
			parent.maxChild, parent.maxIdx, parent.maxSpanIdx = one, c.step.index, c.maxIdx
		}
	case mResourceSpans:
		if c.maxChild < 0 || lim.MaxSpanBytes <= 0 {
			return nil
		}
		// The request a single span needs: its resource, its scope, itself.
		size := fieldSize(n - c.childBytes + fieldSize(c.maxChild))
		if size > lim.MaxSpanBytes {
			return &Error{Reason: SpanTooLarge, Limit: lim.MaxSpanBytes, Got: size,
				Path: fmt.Sprintf("resource_spans[%d].scope_spans[%d].spans[%d]", c.step.index, c.maxIdx, c.maxSpanIdx)}
		}
	}
	return nil
}

func steps(stack []pframe, last pathElem) []pathElem {
	out := make([]pathElem, 0, len(stack))
	for _, f := range stack[1:] {
		out = append(out, f.step)
	}
	if last.f != nil {
		out = append(out, last)
	}
	return out
}

func tooDeep(stack []pframe, last pathElem, limit int) *Error {
	s := steps(stack, last)
	return &Error{Reason: ValueTooDeep, Limit: limit, Got: limit + 1, Path: formatPath(s, valuePathSteps(s))}
}

func malformed(stack []pframe, detail string) *Error {
	s := steps(stack, pathElem{})
	return &Error{Reason: Malformed, Detail: detail, Path: formatPath(s, min(len(s), 12))}
}

// fieldSize is the wire size of a length-delimited field with a one-byte
// tag (field numbers 1 to 15: every field pdata encodes here; the
// deprecated scope spans, field 1000, are encoded as scope_spans).
func fieldSize(n int) int { return 1 + varintLen(uint64(n)) + n } //nolint:gosec // G115: n is a length, never negative

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// uvarint decodes a varint of at most 10 bytes; n <= 0 when b does not
// hold a complete, valid one.
func uvarint(b []byte) (v uint64, n int) {
	var shift uint
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if i == 9 && c > 1 {
			return 0, -1
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i + 1
		}
		shift += 7
	}
	return 0, -1
}
