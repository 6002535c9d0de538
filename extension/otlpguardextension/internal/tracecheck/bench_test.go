package tracecheck

import (
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// realistic is about 4 MB of spans like an SDK's: 6,000 spans of 10
// attributes, one of them a map.
func realistic() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "checkout")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for i := range 6000 {
		s := spans.AppendEmpty()
		s.SetName("SELECT orders")
		s.SetTraceID([16]byte{1, byte(i), byte(i >> 8)})
		s.SetSpanID([8]byte{2, byte(i), byte(i >> 8)})
		for a := range 9 {
			s.Attributes().PutStr(fmt.Sprintf("app.attribute.%d", a), strings.Repeat("v", 40))
		}
		s.Attributes().PutEmptyMap("m").PutStr("k", "v")
	}
	return td
}

// The walks against pdata's own decoding of the same request, which the
// walk comes before.
func BenchmarkWalk(b *testing.B) {
	td := realistic()
	pb := protoOf(b, td)
	js := jsonOf(b, td)
	lim := Limits{MaxValueDepth: 32, MaxSpans: 16384, MaxItems: 262144, MaxSpanBytes: 4 << 20}
	b.Run("proto", func(b *testing.B) {
		b.SetBytes(int64(len(pb)))
		for b.Loop() {
			if _, err := Proto(pb, lim); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto-pdata-decode", func(b *testing.B) {
		b.SetBytes(int64(len(pb)))
		for b.Loop() {
			if _, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(pb); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json-walk", func(b *testing.B) {
		walkOnly := lim
		walkOnly.MaxSpanBytes = 0 // bodies under the export limit: no decode
		b.SetBytes(int64(len(js)))
		for b.Loop() {
			if _, err := JSON(js, walkOnly); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json-over-export-limit", func(b *testing.B) {
		b.SetBytes(int64(len(js)))
		for b.Loop() {
			if _, err := JSON(js, lim); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json-pdata-decode", func(b *testing.B) {
		b.SetBytes(int64(len(js)))
		for b.Loop() {
			if _, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(js); err != nil {
				b.Fatal(err)
			}
		}
	})
}
