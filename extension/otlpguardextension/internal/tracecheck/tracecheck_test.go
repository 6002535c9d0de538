package tracecheck

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// nested returns a span whose attribute "v" is a value depth levels deep,
// alternating maps and arrays (array levels at odd depths when arrays).
func nested(depth int, arrays bool) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "svc")
	span := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	span.SetName("s")
	v := span.Attributes().PutEmpty("v")
	for range depth - 1 {
		if arrays {
			v = v.SetEmptySlice().AppendEmpty()
		} else {
			v = v.SetEmptyMap().PutEmpty("k")
		}
	}
	v.SetStr("leaf")
	return td
}

func spans(n int) ptrace.Traces {
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for range n {
		ss.AppendEmpty()
	}
	return td
}

func protoOf(t testing.TB, td ptrace.Traces) []byte {
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	return b
}

func jsonOf(t testing.TB, td ptrace.Traces) []byte {
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	return b
}

// exportSize is the protobuf size of a request holding only span i of
// resource r, scope s, with its resource and scope.
func exportSize(td ptrace.Traces, r, s, i int) int {
	one := ptrace.NewTraces()
	rs := one.ResourceSpans().AppendEmpty()
	src := td.ResourceSpans().At(r)
	src.Resource().CopyTo(rs.Resource())
	rs.SetSchemaUrl(src.SchemaUrl())
	ss := rs.ScopeSpans().AppendEmpty()
	srcSS := src.ScopeSpans().At(s)
	srcSS.Scope().CopyTo(ss.Scope())
	ss.SetSchemaUrl(srcSS.SchemaUrl())
	srcSS.Spans().At(i).CopyTo(ss.Spans().AppendEmpty())
	return (&ptrace.ProtoMarshaler{}).TracesSize(one)
}

func TestLimits(t *testing.T) {
	big := ptrace.NewTraces()
	rs := big.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "svc")
	rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("small")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("scope")
	ss.Spans().AppendEmpty().SetName("small")
	ss.Spans().AppendEmpty().Attributes().PutStr("payload", strings.Repeat("p", 5000))
	bigSize := exportSize(big, 0, 1, 1)

	events := ptrace.NewTraces()
	ev := events.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().Events().AppendEmpty()
	v := ev.Attributes().PutEmpty("e")
	for range 3 {
		v = v.SetEmptyMap().PutEmpty("k")
	}

	for _, tc := range []struct {
		name   string
		td     ptrace.Traces
		lim    Limits
		reason Reason
		path   string
	}{
		{"flat value", nested(1, false), Limits{MaxValueDepth: 1}, "", ""},
		{"map at limit", nested(32, false), Limits{MaxValueDepth: 32}, "", ""},
		{"map over limit", nested(33, false), Limits{MaxValueDepth: 32}, ValueTooDeep, "resource_spans[0].scope_spans[0].spans[0].attributes[0].value"},
		{"array over limit", nested(6, true), Limits{MaxValueDepth: 5}, ValueTooDeep, "resource_spans[0].scope_spans[0].spans[0].attributes[0].value"},
		{"event attribute", events, Limits{MaxValueDepth: 3}, ValueTooDeep, "resource_spans[0].scope_spans[0].spans[0].events[0].attributes[0].value"},
		{"depth off", nested(200, false), Limits{}, "", ""},
		{"spans at limit", spans(100), Limits{MaxSpans: 100}, "", ""},
		{"spans over limit", spans(101), Limits{MaxSpans: 100}, TooManySpans, ""},
		{"span fits exactly", big, Limits{MaxSpanBytes: bigSize}, "", ""},
		{"span one byte over", big, Limits{MaxSpanBytes: bigSize - 1}, SpanTooLarge, "resource_spans[0].scope_spans[1].spans[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for enc, check := range map[string]func() *Error{
				"proto": func() *Error { return protoErr(protoOf(t, tc.td), tc.lim) },
				"json":  func() *Error { return jsonErr(jsonOf(t, tc.td), tc.lim) },
			} {
				err := check()
				if tc.reason == "" {
					assert.Nil(t, err, enc)
					continue
				}
				if assert.NotNil(t, err, enc) {
					assert.Equal(t, tc.reason, err.Reason, enc)
					assert.Equal(t, tc.path, err.Path, enc)
					assert.NotEmpty(t, err.Error())
				}
			}
		})
	}
}

func TestSpanTooLargeGotIsExact(t *testing.T) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("k8s.pod.name", strings.Repeat("r", 300))
	rs.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
	for i := range 3 {
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName(strings.Repeat("s", 100*i))
		for j := range 4 {
			s := ss.Spans().AppendEmpty()
			s.Attributes().PutStr("p", strings.Repeat("x", 1000*(i+j)))
		}
	}
	want := exportSize(td, 0, 2, 3)
	err := protoErr(protoOf(t, td), Limits{MaxSpanBytes: 1000})
	require.NotNil(t, err)
	assert.Equal(t, want, err.Got)
	assert.Equal(t, "resource_spans[0].scope_spans[2].spans[3]", err.Path)
	assert.Nil(t, protoErr(protoOf(t, td), Limits{MaxSpanBytes: want}))
}

// deepArray is the raw protobuf of a request whose one span's attribute
// nests depth array levels: built outside in, without pdata (whose own
// encoder recurses), as an attacker would.
func deepArray(depth int) []byte {
	const leaf = 2 // AnyValue{bool_value: false}: tag 0x10, 0x00
	sizes := make([]int, depth+1)
	sizes[0] = leaf
	for i := 1; i <= depth; i++ {
		sizes[i] = fieldSize(fieldSize(sizes[i-1])) // AnyValue{array_value{values: AnyValue}}
	}
	kv := fieldSize(1) + fieldSize(sizes[depth]) // key "k", value
	var b []byte
	lenField := func(tag byte, n int) {
		b = append(b, tag)
		b = binary.AppendUvarint(b, uint64(n))
	}
	spanLen := 1 + varintLen(uint64(kv)) + kv
	scopeLen := fieldSize(spanLen)
	rsLen := fieldSize(scopeLen)
	lenField(0x0a, rsLen)    // resource_spans
	lenField(0x12, scopeLen) // scope_spans
	lenField(0x12, spanLen)  // spans
	lenField(0x4a, kv)       // attributes (field 9)
	lenField(0x0a, 1)        // key
	b = append(b, 'k')
	lenField(0x12, sizes[depth]) // value
	for i := depth; i >= 1; i-- {
		lenField(0x2a, fieldSize(sizes[i-1])) // array_value
		lenField(0x0a, sizes[i-1])            // values
	}
	return append(b, 0x10, 0x00)
}

func TestDeepRawRequest(t *testing.T) {
	// pdata's own decoder stops at 100 nested value messages (50 array
	// levels); 40 is within it.
	b := deepArray(40)
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
	require.NoError(t, err, "the hand-built request must be valid OTLP")
	v, ok := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().Get("k")
	require.True(t, ok)
	depth := 1
	for v.Type() == pcommon.ValueTypeSlice {
		v = v.Slice().At(0)
		depth++
	}
	assert.Equal(t, 41, depth)
	assert.Nil(t, protoErr(b, Limits{MaxValueDepth: 41}))
	err2 := protoErr(b, Limits{MaxValueDepth: 40})
	require.NotNil(t, err2)
	assert.Equal(t, ValueTooDeep, err2.Reason)

	// 460,000 levels, as in the attack: refused at level 33, cheaply.
	huge := deepArray(460000)
	e := protoErr(huge, Limits{MaxValueDepth: 32})
	require.NotNil(t, e)
	assert.Equal(t, ValueTooDeep, e.Reason)
	assert.Equal(t, "resource_spans[0].scope_spans[0].spans[0].attributes[0].value", e.Path)
}

func TestJSONDeepNesting(t *testing.T) {
	const levels = 100000
	body := `{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":` +
		strings.Repeat(`{"arrayValue":{"values":[`, levels) + `{"boolValue":true}` + strings.Repeat(`]}}`, levels) + `}]}]}]}]}`
	e := jsonErr([]byte(body), Limits{MaxValueDepth: 32})
	require.NotNil(t, e)
	assert.Equal(t, ValueTooDeep, e.Reason)
	assert.Equal(t, "resource_spans[0].scope_spans[0].spans[0].attributes[0].value", e.Path)

	// Deep nesting inside a field the walk does not know is bounded too.
	unknown := `{"resourceSpans":[{"x":` + strings.Repeat("[", levels) + strings.Repeat("]", levels) + `}]}`
	e = jsonErr([]byte(unknown), Limits{MaxValueDepth: 32})
	require.NotNil(t, e)
	assert.Equal(t, ValueTooDeep, e.Reason)
}

func TestSnakeCaseJSON(t *testing.T) {
	body := `{"resource_spans":[{"scope_spans":[{"spans":[{},{},{}]}]}]}`
	e := jsonErr([]byte(body), Limits{MaxSpans: 2})
	require.NotNil(t, e)
	assert.Equal(t, TooManySpans, e.Reason)
}

func TestMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"length past end":  {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01},
		"bad varint":       {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"group wire type":  {0x0b},
		"field zero":       {0x02, 0x00},
		"truncated fixed":  {0x0a, 0x03, 0x19, 0x00, 0x00},
		"truncated nested": {0x0a, 0x02, 0x12, 0x05},
	} {
		e := protoErr(b, Limits{})
		if assert.NotNil(t, e, name) {
			assert.Equal(t, Malformed, e.Reason, name)
		}
	}
	for name, b := range map[string]string{
		"truncated":    `{"resourceSpans":[`,
		"not object":   `[]`,
		"trailing":     `{} {}`,
		"empty":        ``,
		"bad string":   `{"resourceSpans":"nope`,
		"key expected": `{"resourceSpans":[{nope:1}]}`,
	} {
		e := jsonErr([]byte(b), Limits{})
		if assert.NotNil(t, e, name) {
			assert.Equal(t, Malformed, e.Reason, name)
			assert.NotContains(t, e.Error(), "nope", "errors must not quote the request")
		}
	}
}

func FuzzProto(f *testing.F) {
	f.Add(protoOf(f, nested(5, false)))
	f.Add(protoOf(f, nested(5, true)))
	f.Add(protoOf(f, spans(3)))
	f.Add(deepArray(40))
	lim := Limits{MaxValueDepth: 4, MaxSpans: 5, MaxSpanBytes: 200, MaxItems: 30}
	f.Fuzz(func(t *testing.T, b []byte) {
		counts, err := Proto(b, lim)
		// Decoded as the receivers decode it (deprecated scope spans moved).
		er := ptraceotlp.NewExportRequest()
		if derr := er.UnmarshalProto(b); derr != nil || err != nil {
			return
		}
		td := er.Traces()
		// Passed the walk and decodes: it must be within every limit.
		assert.LessOrEqual(t, td.SpanCount(), lim.MaxSpans)
		assert.LessOrEqual(t, maxDepth(td), lim.MaxValueDepth)
		for r := 0; r < td.ResourceSpans().Len(); r++ {
			for s := 0; s < td.ResourceSpans().At(r).ScopeSpans().Len(); s++ {
				for i := 0; i < td.ResourceSpans().At(r).ScopeSpans().At(s).Spans().Len(); i++ {
					assert.LessOrEqual(t, exportSize(td, r, s, i), lim.MaxSpanBytes)
				}
			}
		}
		// And the JSON walk agrees on the same request (it may see fewer
		// items: of two oneof values on the wire, the decoder keeps one).
		jc, jerr := JSON(jsonOf(t, td), lim)
		assert.Nil(t, jerr)
		assert.Equal(t, counts.Spans, jc.Spans)
		assert.LessOrEqual(t, jc.Items, counts.Items)
	})
}

func FuzzJSON(f *testing.F) {
	f.Add(jsonOf(f, nested(5, false)))
	f.Add(jsonOf(f, spans(3)))
	f.Add([]byte(`{"resource_spans":[{"scope_spans":[{"spans":[{"attributes":[{"key":"a","value":{"kvlist_value":{"values":[]}}}]}]}]}]}`))
	lim := Limits{MaxValueDepth: 4, MaxSpans: 5}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := jsonErr(b, lim)
		td, derr := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(b)
		if derr == nil && err != nil && err.Reason == Malformed && json.Valid(b) {
			t.Errorf("valid JSON the decoder accepts refused as malformed: %v", err)
		}
		if derr != nil || err != nil {
			return
		}
		assert.LessOrEqual(t, td.SpanCount(), lim.MaxSpans)
		assert.LessOrEqual(t, maxDepth(td), lim.MaxValueDepth)
	})
}

// maxDepth is the deepest attribute value of td, counted as the walk does.
func maxDepth(td ptrace.Traces) int {
	deepest := 0
	var walk func(v pcommon.Value, d int)
	walk = func(v pcommon.Value, d int) {
		deepest = max(deepest, d)
		switch v.Type() {
		case pcommon.ValueTypeSlice:
			for i := 0; i < v.Slice().Len(); i++ {
				walk(v.Slice().At(i), d+1)
			}
		case pcommon.ValueTypeMap:
			for _, c := range v.Map().All() {
				walk(c, d+1)
			}
		}
	}
	attrs := func(m pcommon.Map) {
		for _, v := range m.All() {
			walk(v, 1)
		}
	}
	for _, rs := range td.ResourceSpans().All() {
		attrs(rs.Resource().Attributes())
		for _, ss := range rs.ScopeSpans().All() {
			attrs(ss.Scope().Attributes())
			for _, s := range ss.Spans().All() {
				attrs(s.Attributes())
				for _, e := range s.Events().All() {
					attrs(e.Attributes())
				}
				for _, l := range s.Links().All() {
					attrs(l.Attributes())
				}
			}
		}
	}
	return deepest
}

func protoErr(b []byte, lim Limits) *Error {
	_, err := Proto(b, lim)
	return err
}

func jsonErr(b []byte, lim Limits) *Error {
	_, err := JSON(b, lim)
	return err
}

func TestItems(t *testing.T) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()                   // 1
	rs.Resource().Attributes().PutStr("service.name", "svc") // 2
	s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty() // 3, 4
	s.Attributes().PutEmptySlice("a").AppendEmpty()          // 5, 6
	s.Events().AppendEmpty().Attributes().PutStr("e", "v")   // 7, 8
	s.Links().AppendEmpty()                                  // 9
	m := s.Attributes().PutEmptyMap("m")                     // 10
	m.PutStr("x", "y")                                       // 11
	for name, check := range map[string]func(Limits) (Counts, *Error){
		"proto": func(l Limits) (Counts, *Error) { return Proto(protoOf(t, td), l) },
		"json":  func(l Limits) (Counts, *Error) { return JSON(jsonOf(t, td), l) },
	} {
		c, err := check(Limits{MaxItems: 11})
		assert.Nil(t, err, name)
		assert.Equal(t, Counts{Spans: 1, Items: 11}, c, name)
		_, err = check(Limits{MaxItems: 10})
		if assert.NotNil(t, err, name) {
			assert.Equal(t, TooManyItems, err.Reason, name)
		}
	}
}

// pdata still decodes OTLP's old instrumentation_library_spans (field 1000
// of ResourceSpans): spans there count like any other.
func TestDeprecatedScopeSpans(t *testing.T) {
	scope := []byte{0x12, 0x00, 0x12, 0x00, 0x12, 0x00}          // three empty spans
	rs := append([]byte{0xc2, 0x3e, byte(len(scope))}, scope...) // field 1000, wire type 2
	req := append([]byte{0x0a, byte(len(rs))}, rs...)
	// As the receivers decode it (the gRPC service and OTLP/HTTP).
	er := ptraceotlp.NewExportRequest()
	require.NoError(t, er.UnmarshalProto(req))
	require.Equal(t, 3, er.Traces().SpanCount(), "the receivers decode them")
	c, e := Proto(req, Limits{MaxSpans: 3})
	assert.Nil(t, e)
	assert.Equal(t, 3, c.Spans)
	e = protoErr(req, Limits{MaxSpans: 2})
	require.NotNil(t, e)
	assert.Equal(t, TooManySpans, e.Reason)
	e = jsonErr([]byte(`{"resourceSpans":[{"deprecatedScopeSpans":[{"spans":[{},{},{}]}]}]}`), Limits{MaxSpans: 2})
	require.NotNil(t, e)
	assert.Equal(t, TooManySpans, e.Reason)
}

// pdata writes span ids, status, scope and resource even when a sender
// leaves them out: the size check counts them, as the export will.
func TestSpanSizeAsPdataEncodes(t *testing.T) {
	name := bytes.Repeat([]byte{'n'}, 100)
	span := append([]byte{0x2a, byte(len(name))}, name...) // name only
	req := append([]byte{0x0a, byte(len(span) + 4), 0x12, byte(len(span) + 2), 0x12, byte(len(span))}, span...)
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(req)
	require.NoError(t, err)
	encoded := (&ptrace.ProtoMarshaler{}).TracesSize(td)
	require.Greater(t, encoded, len(req))
	assert.Nil(t, protoErr(req, Limits{MaxSpanBytes: encoded}))
	e := protoErr(req, Limits{MaxSpanBytes: encoded - 1})
	require.NotNil(t, e)
	assert.Equal(t, encoded, e.Got)
}

// Keys with escapes are decoded as the OTLP decoders decode them.
func TestEscapedJSONKeys(t *testing.T) {
	body := `{"resource\u0053pans":[{"scope\u0053pans":[{"spans":[{},{},{}]}]}]}`
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces([]byte(body))
	require.NoError(t, err)
	require.Equal(t, 3, td.SpanCount())
	e := jsonErr([]byte(body), Limits{MaxSpans: 2})
	require.NotNil(t, e)
	assert.Equal(t, TooManySpans, e.Reason)
}
