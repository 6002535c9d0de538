package utf8check

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/ptrace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// protobufGoRefuses is the oracle: protobuf-go, as a strict backend runs
// it, decoding what pdata holds. It validates UTF-8 in every proto3 string
// field; ours must refuse exactly when it does.
func protobufGoRefuses(t testing.TB, td ptrace.Traces) bool {
	t.Helper()
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatalf("pdata cannot re-marshal what it decoded: %v", err)
	}
	err = proto.Unmarshal(b, &tracepb.TracesData{})
	if err != nil && !strings.Contains(err.Error(), "invalid UTF-8") {
		t.Fatalf("protobuf-go refuses pdata's output for another reason: %v", err)
	}
	return err != nil
}

func checkAgainstOracle(t testing.TB, td ptrace.Traces) {
	t.Helper()
	err := Traces(td)
	var e *Error
	if err != nil && !errors.As(err, &e) {
		t.Fatalf("unexpected error type %T: %v", err, err)
	}
	if got, want := err != nil, protobufGoRefuses(t, td); got != want {
		t.Fatalf("utf8check refuses: %v (%v); protobuf-go refuses: %v", got, err, want)
	}
}

// naiveValid is the plain reference: every string of td through
// pdata's raw views and unicode/utf8, with none of the fast path.
func naiveValid(td ptrace.Traces) bool {
	var strs []string
	var raw func(v any)
	raw = func(v any) {
		switch v := v.(type) {
		case string:
			strs = append(strs, v)
		case map[string]any:
			for k, x := range v {
				strs = append(strs, k)
				raw(x)
			}
		case []any:
			for _, x := range v {
				raw(x)
			}
		}
	}
	for _, rs := range td.ResourceSpans().All() {
		raw(rs.Resource().Attributes().AsRaw())
		strs = append(strs, rs.SchemaUrl())
		for _, ss := range rs.ScopeSpans().All() {
			raw(ss.Scope().Attributes().AsRaw())
			strs = append(strs, ss.Scope().Name(), ss.Scope().Version(), ss.SchemaUrl())
			for _, s := range ss.Spans().All() {
				raw(s.Attributes().AsRaw())
				strs = append(strs, s.Name(), s.TraceState().AsRaw(), s.Status().Message())
				for _, e := range s.Events().All() {
					raw(e.Attributes().AsRaw())
					strs = append(strs, e.Name())
				}
				for _, l := range s.Links().All() {
					raw(l.Attributes().AsRaw())
					strs = append(strs, l.TraceState().AsRaw())
				}
			}
		}
	}
	for _, s := range strs {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// TestAgreesWithProtobufGo corrupts one random string of the fixtures at a
// time (a name, a key, a value, a trace state...) and checks that the
// check and protobuf-go refuse the same batches, and that protobuf-go
// accepts each after Repair.
func TestAgreesWithProtobufGo(t *testing.T) {
	checkAgainstOracle(t, validTraces())
	fixtures := fixtureBytes(t)
	r := rand.New(rand.NewPCG(1, 2))
	refused := 0
	for i := range 2000 {
		b := append([]byte(nil), fixtures[i%len(fixtures)]...)
		// Put a byte ≥ 0x80 somewhere: inside a string it usually makes it
		// invalid; elsewhere it breaks the encoding (skipped) or lands in
		// an id, a number or bytes (must stay accepted).
		b[r.IntN(len(b))] = byte(0x80 + r.IntN(0x80))
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
		if err != nil {
			continue
		}
		checkAgainstOracle(t, td)
		if Traces(td) != nil {
			refused++
			Repair(td)
			if protobufGoRefuses(t, td) {
				t.Fatal("protobuf-go still refuses the batch after Repair")
			}
		}
	}
	if refused < 100 {
		t.Fatalf("only %d of 2000 corruptions made an invalid string: the test is not testing", refused)
	}
	t.Logf("%d corrupted batches refused by both", refused)
}

// fixtureBytes returns the processor's fixtures as OTLP protobuf.
func fixtureBytes(tb testing.TB) [][]byte {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "..", "testdata", "input", "*.json"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no fixtures: %v", err)
	}
	var out [][]byte
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(raw)
		if err != nil {
			tb.Fatal(err)
		}
		b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzTraces: bytes → pdata's protobuf decoder, as the OTLP receiver
// decodes a request → the check, compared with naiveValid. (protobuf-go as
// the oracle here makes coverage-guided fuzzing about 50 times slower, so
// it judges the table and the random corruptions in TestAgreesWithProtobufGo
// instead.) The seeds are the processor's Istio-shaped fixtures, one with a
// bad string.
func FuzzTraces(f *testing.F) {
	for _, b := range fixtureBytes(f) {
		f.Add(b)
	}
	td := validTraces()
	firstSpan(td).Attributes().PutStr("http.url", bad)
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(data)
		if err != nil {
			return
		}
		err = Traces(td)
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("unexpected error type %T: %v", err, err)
		}
		if got, want := err == nil, naiveValid(td); got != want {
			t.Fatalf("utf8check accepts: %v (%v); the plain walk says valid: %v", got, err, want)
		}
		spans := td.SpanCount()
		n := Repair(td)
		if (n > 0) != (err != nil) {
			t.Fatalf("Repair changed %d strings of a batch the check judged %v", n, err)
		}
		if err := Traces(td); err != nil || !naiveValid(td) {
			t.Fatalf("still invalid after Repair: %v", err)
		}
		if td.SpanCount() != spans {
			t.Fatalf("Repair changed the span count: %d → %d", spans, td.SpanCount())
		}
	})
}
