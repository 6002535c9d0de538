package utf8check

import (
	"encoding/binary"
	"unicode/utf8"
	"unsafe"
)

// highBits is the top bit of each byte in a word: set only in non-ASCII.
const highBits = 0x8080808080808080

// validString is utf8.ValidString with a faster path for ASCII, which is
// nearly all of what Envoy sends: its strings are short (keys of 10 to 30
// bytes), where utf8.ValidString spends most of its time in the byte loop
// after its last full word. Here every byte is covered by word loads (the
// last one overlapping), and only a string with a high bit set goes on to
// the full check.
func validString(s string) bool {
	n := len(s)
	if n < 8 {
		var acc byte
		for i := 0; i < n; i++ {
			acc |= s[i]
		}
		return acc < utf8.RuneSelf || utf8.ValidString(s)
	}
	// A read-only view of the string's bytes, for word loads that the
	// compiler turns into single unaligned loads on amd64 and arm64.
	b := unsafe.Slice(unsafe.StringData(s), n)
	var acc uint64
	for i := 0; i+8 <= n; i += 8 {
		acc |= binary.LittleEndian.Uint64(b[i:])
	}
	acc |= binary.LittleEndian.Uint64(b[n-8:])
	return acc&highBits == 0 || utf8.ValidString(s)
}
