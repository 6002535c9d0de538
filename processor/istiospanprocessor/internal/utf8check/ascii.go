package utf8check

import (
	"encoding/binary"
	"unsafe"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// highBitsOf ORs the bytes of s into a word, 8 at a time (the last load
// overlapping), through a read-only view of the string's bytes that the
// compiler turns into single unaligned loads on amd64 and arm64. Only the
// high bit of each byte matters: it is set in every non-ASCII byte.
func highBitsOf(s string) uint64 {
	n := len(s)
	if n < 8 {
		var acc byte
		for i := 0; i < n; i++ {
			acc |= s[i]
		}
		return uint64(acc)
	}
	b := unsafe.Slice(unsafe.StringData(s), n) //nolint:gosec // read-only view of s, n == len(s): no copy on the hot path
	var acc uint64
	for i := 0; i+8 <= n; i += 8 {
		acc |= binary.LittleEndian.Uint64(b[i:])
	}
	return acc | binary.LittleEndian.Uint64(b[n-8:])
}

// resourceHighBits ORs the bytes of every string Traces checks in one
// resource into a word. Without a high bit, all of them are ASCII and
// valid; with one, Traces looks again, string by string. This pass has no
// branch per string, which on Envoy's short strings makes it about twice
// as fast as checking each.
func resourceHighBits(rs ptrace.ResourceSpans) uint64 {
	acc := mapBits(rs.Resource().Attributes()) | highBitsOf(rs.SchemaUrl())
	sss := rs.ScopeSpans()
	for j := 0; j < sss.Len(); j++ {
		ss := sss.At(j)
		sc := ss.Scope()
		acc |= highBitsOf(sc.Name()) | highBitsOf(sc.Version()) | highBitsOf(ss.SchemaUrl()) | mapBits(sc.Attributes())
		spans := ss.Spans()
		for k := 0; k < spans.Len(); k++ {
			s := spans.At(k)
			acc |= highBitsOf(s.Name()) | highBitsOf(s.TraceState().AsRaw()) |
				highBitsOf(s.Status().Message()) | mapBits(s.Attributes())
			events := s.Events()
			for e := 0; e < events.Len(); e++ {
				acc |= highBitsOf(events.At(e).Name()) | mapBits(events.At(e).Attributes())
			}
			links := s.Links()
			for l := 0; l < links.Len(); l++ {
				acc |= highBitsOf(links.At(l).TraceState().AsRaw()) | mapBits(links.At(l).Attributes())
			}
		}
	}
	return acc
}

// mapBits is highBitsOf over a map's keys and string values, nested too.
func mapBits(m pcommon.Map) uint64 {
	var acc uint64
	for k, v := range m.All() {
		acc |= highBitsOf(k) | valueBits(v)
	}
	return acc
}

func valueBits(v pcommon.Value) uint64 {
	// Str first: most values are strings, and it is one type check.
	if s := v.Str(); s != "" {
		return highBitsOf(s)
	}
	switch v.Type() {
	case pcommon.ValueTypeMap:
		return mapBits(v.Map())
	case pcommon.ValueTypeSlice:
		var acc uint64
		sl := v.Slice()
		for i := 0; i < sl.Len(); i++ {
			acc |= valueBits(sl.At(i))
		}
		return acc
	}
	return 0
}
