package utf8check

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/ptracetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

const bad = "ok-\xc3\x28-ok" // a two-byte lead followed by ASCII

// validTraces is one resource with one scope with one span, every string
// field filled, attributes nested, and non-ASCII but valid UTF-8 throughout.
func validTraces() ptrace.Traces { return tracesWith("ü") }

// asciiTraces is validTraces in ASCII only: the shape on which the check's
// one-pass shortcut (ascii.go) must still see every field.
func asciiTraces() ptrace.Traces { return tracesWith("u") }

func tracesWith(u string) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
	rs.Resource().Attributes().PutStr("service.name", "prod"+u+"ctpage.default")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
	ss.Scope().SetName("envoy")
	ss.Scope().SetVersion("1.36.0-" + u)
	ss.Scope().Attributes().PutStr("scope.k", "v")
	s := ss.Spans().AppendEmpty()
	s.SetName("GET /caf" + u)
	s.TraceState().FromRaw("vendor=ok")
	s.Status().SetMessage("d" + u + "j" + u + " vu")
	a := s.Attributes()
	a.PutStr("http.url", "http://reviews:9080/reviews/0")
	a.PutInt("http.status_code", 200)
	a.PutEmptyBytes("raw").FromRaw([]byte{0xff, 0xfe}) // bytes are not strings
	m := a.PutEmptyMap("outer")
	m.PutStr("inner", u)
	sl := m.PutEmptySlice("list")
	sl.AppendEmpty().SetStr("a")
	sl.AppendEmpty().SetEmptyMap().PutStr("deep", "b")
	ev := s.Events().AppendEmpty()
	ev.SetName("exception")
	ev.Attributes().PutStr("exception.message", u)
	l := s.Links().AppendEmpty()
	l.TraceState().FromRaw("vendor=link")
	l.Attributes().PutStr("link.k", "v")
	return td
}

func firstSpan(td ptrace.Traces) ptrace.Span {
	return td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
}

func TestValidTraces(t *testing.T) {
	require.NoError(t, Traces(validTraces()))
	require.NoError(t, Traces(asciiTraces()))
	require.NotZero(t, resourceHighBits(validTraces().ResourceSpans().At(0))&highBits)
	require.Zero(t, resourceHighBits(asciiTraces().ResourceSpans().At(0))&highBits)
	require.NoError(t, Traces(ptrace.NewTraces()))
}

// Every string field OTLP carries for a span is checked, and the error
// names it by its OTLP path.
func TestEveryStringField(t *testing.T) {
	const sp = "resource_spans[0].scope_spans[0].spans[0]."
	tests := []struct {
		path    string
		corrupt func(td ptrace.Traces, s string)
	}{
		{`resource_spans[0].resource.attributes["service.name"]`, func(td ptrace.Traces, s string) {
			td.ResourceSpans().At(0).Resource().Attributes().PutStr("service.name", s)
		}},
		{`resource_spans[0].resource.attributes[1] key "ok-\xc3(-ok"`, func(td ptrace.Traces, s string) {
			td.ResourceSpans().At(0).Resource().Attributes().PutStr(s, "v")
		}},
		{"resource_spans[0].schema_url", func(td ptrace.Traces, s string) { td.ResourceSpans().At(0).SetSchemaUrl(s) }},
		{"resource_spans[0].scope_spans[0].scope.name", func(td ptrace.Traces, s string) {
			td.ResourceSpans().At(0).ScopeSpans().At(0).Scope().SetName(s)
		}},
		{"resource_spans[0].scope_spans[0].scope.version", func(td ptrace.Traces, s string) {
			td.ResourceSpans().At(0).ScopeSpans().At(0).Scope().SetVersion(s)
		}},
		{"resource_spans[0].scope_spans[0].schema_url", func(td ptrace.Traces, s string) {
			td.ResourceSpans().At(0).ScopeSpans().At(0).SetSchemaUrl(s)
		}},
		{`resource_spans[0].scope_spans[0].scope.attributes["scope.k"]`, func(td ptrace.Traces, s string) {
			td.ResourceSpans().At(0).ScopeSpans().At(0).Scope().Attributes().PutStr("scope.k", s)
		}},
		{sp + "name", func(td ptrace.Traces, s string) { firstSpan(td).SetName(s) }},
		{sp + "trace_state", func(td ptrace.Traces, s string) { firstSpan(td).TraceState().FromRaw(s) }},
		{sp + "status.message", func(td ptrace.Traces, s string) { firstSpan(td).Status().SetMessage(s) }},
		{sp + `attributes["http.url"]`, func(td ptrace.Traces, s string) { firstSpan(td).Attributes().PutStr("http.url", s) }},
		{sp + `attributes["outer"]["inner"]`, func(td ptrace.Traces, s string) {
			m, _ := firstSpan(td).Attributes().Get("outer")
			m.Map().PutStr("inner", s)
		}},
		{sp + `attributes["outer"]["list"][1]["deep"]`, func(td ptrace.Traces, s string) {
			m, _ := firstSpan(td).Attributes().Get("outer")
			l, _ := m.Map().Get("list")
			l.Slice().At(1).Map().PutStr("deep", s)
		}},
		{sp + `attributes["outer"]["list"][0]`, func(td ptrace.Traces, s string) {
			m, _ := firstSpan(td).Attributes().Get("outer")
			l, _ := m.Map().Get("list")
			l.Slice().At(0).SetStr(s)
		}},
		{sp + "events[0].name", func(td ptrace.Traces, s string) { firstSpan(td).Events().At(0).SetName(s) }},
		{sp + `events[0].attributes["exception.message"]`, func(td ptrace.Traces, s string) {
			firstSpan(td).Events().At(0).Attributes().PutStr("exception.message", s)
		}},
		{sp + "links[0].trace_state", func(td ptrace.Traces, s string) { firstSpan(td).Links().At(0).TraceState().FromRaw(s) }},
		{sp + `links[0].attributes["link.k"]`, func(td ptrace.Traces, s string) {
			firstSpan(td).Links().At(0).Attributes().PutStr("link.k", s)
		}},
	}
	for _, tt := range tests {
		for base, traces := range map[string]func() ptrace.Traces{"unicode": validTraces, "ascii": asciiTraces} {
			t.Run(base+"/"+tt.path, func(t *testing.T) {
				testField(t, traces, tt.path, tt.corrupt)
			})
		}
	}
}

// testField corrupts one field of a batch built by traces, expects Traces
// to name it by path, and Repair to fix exactly that field.
func testField(t *testing.T, traces func() ptrace.Traces, path string, corrupt func(ptrace.Traces, string)) {
	t.Helper()
	td := traces()
	corrupt(td, bad)
	err := Traces(td)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, path, e.Path)
	assert.True(t, utf8.ValidString(err.Error()), "the message quotes escaped: %q", err.Error())

	// Repair changes that one string, as strings.ToValidUTF8 would, and
	// nothing else.
	want := traces()
	corrupt(want, strings.ToValidUTF8(bad, "\uFFFD"))
	assert.Equal(t, 1, Repair(td))
	require.NoError(t, Traces(td))
	require.NoError(t, ptracetest.CompareTraces(want, td))
}

// The path counts resources, scopes and spans, so a sender can find the
// one bad span among many.
func TestPathIndexes(t *testing.T) {
	td := ptrace.NewTraces()
	for range 3 {
		validTraces().ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	}
	rs := td.ResourceSpans().At(2)
	validTraces().ResourceSpans().At(0).ScopeSpans().MoveAndAppendTo(rs.ScopeSpans())
	ss := rs.ScopeSpans().At(1)
	ss.Spans().AppendEmpty().SetName("fine")
	ss.Spans().AppendEmpty().SetName(bad)
	var e *Error
	require.ErrorAs(t, Traces(td), &e)
	assert.Equal(t, "resource_spans[2].scope_spans[1].spans[2].name", e.Path)
}

// A bad value is reported, never quoted: values may be credentials.
func TestValueNotInMessage(t *testing.T) {
	td := validTraces()
	firstSpan(td).Attributes().PutStr("authorization", "Bearer hunter2\xff")
	err := Traces(td)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2")
	assert.Contains(t, err.Error(), `attributes["authorization"]`)
}

// Strings of every length around the word size, with one byte anywhere
// made invalid, agree with unicode/utf8.
func TestValidStringMatchesStdlib(t *testing.T) {
	base := "abcdefghijklmnopqrstuvwxyz0123456789é日🚀"
	for n := 0; n <= len(base); n++ {
		s := base[:n]
		assert.Equal(t, utf8.ValidString(s), validString(s), "%q", s)
		for i := 0; i < n; i++ {
			for _, c := range []byte{0x80, 0xbf, 0xc0, 0xc3, 0xe0, 0xf0, 0xff} {
				b := []byte(s)
				b[i] = c
				assert.Equal(t, utf8.ValidString(string(b)), validString(string(b)), "%q", b)
			}
		}
	}
}

// FuzzValidString checks the ASCII shortcut against unicode/utf8 on
// arbitrary bytes.
func FuzzValidString(f *testing.F) {
	for _, s := range []string{"", "a", "abcdefgh", "abcdefghi", "é", "abcdefg\xff", "\xffabcdefgh", "日本語テキスト"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validString(s), utf8.ValidString(s); got != want {
			t.Fatalf("validString(%q) = %v, unicode/utf8 says %v", s, got, want)
		}
	})
}

// A valid batch costs no allocation: the check runs on every request.
func TestNoAllocationsWhenValid(t *testing.T) {
	td := validTraces()
	for _, b := range fixtureBytes(t) {
		in, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
		require.NoError(t, err)
		in.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := Traces(td); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

// A repaired key that collides with a key sent valid is dropped: the valid
// attribute wins, and every other attribute stays.
func TestRepairKeyCollision(t *testing.T) {
	td := validTraces()
	a := firstSpan(td).Attributes()
	a.PutStr("k\uFFFD", "sent valid")
	a.PutStr("k\xff", "sent invalid")
	n := a.Len()
	assert.Equal(t, 1, Repair(td))
	require.NoError(t, Traces(td))
	assert.Equal(t, n-1, a.Len())
	v, _ := a.Get("k\uFFFD")
	assert.Equal(t, "sent valid", v.Str())
}

// Several bad strings in one batch, in keys and values at once.
func TestRepairCountsEveryString(t *testing.T) {
	td := validTraces()
	firstSpan(td).SetName(bad)
	a := firstSpan(td).Attributes()
	a.PutStr(bad, bad) // one bad key holding a bad value: two strings
	firstSpan(td).Events().At(0).Attributes().PutStr("x", "\xff\xfe")
	assert.Equal(t, 4, Repair(td))
	require.NoError(t, Traces(td))
	v, ok := a.Get(strings.ToValidUTF8(bad, "\uFFFD"))
	require.True(t, ok)
	assert.Equal(t, "ok-\uFFFD(-ok", v.Str())
	assert.Zero(t, Repair(td), "a repaired batch needs nothing more")
}
