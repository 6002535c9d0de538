package utf8check

import "unicode/utf8"

// highBits is the top bit of each byte in a word: set only in non-ASCII.
const highBits = 0x8080808080808080

// validString is utf8.ValidString with a faster path for ASCII, which is
// nearly all of what Envoy sends: its strings are short (keys of 10 to 30
// bytes), where utf8.ValidString spends most of its time in the byte loop
// after its last full word.
func validString(s string) bool {
	return highBitsOf(s)&highBits == 0 || utf8.ValidString(s)
}
