package backendauthextension // import "github.com/otelcol-istio/otelcol-istio/extension/backendauthextension"

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// maxRemembered is how many credential values are kept for cleaning: the
// current one and those it replaced, since an answer to a request sent just
// before a rotation may echo the old token.
const maxRemembered = 4

// redactedText replaces a credential in a gRPC status message.
const redactedText = "<redacted>"

// echoes removes the credentials this extension sent from the backend's
// answers, where backend_auth first sees them: some backends echo the
// request's auth header in their error text, which the exporters log.
type echoes struct {
	// scheme is the configured word before the token ("Bearer"), so that
	// the token inside a header value is known; empty: the value is the
	// token.
	scheme string

	mu sync.Mutex
	// sent are the header values sent, oldest first, at most maxRemembered.
	sent []string
	// needles are what to remove: every form (echoForms) of each sent value
	// and of the token inside it, longest first.
	needles []string
}

// remember notes a header value that was sent (e.g. "Bearer abc").
func (e *echoes) remember(headerValue string) {
	headerValue = strings.TrimSpace(headerValue)
	if headerValue == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if slices.Contains(e.sent, headerValue) {
		return
	}
	e.sent = append(e.sent, headerValue)
	if n := len(e.sent); n > maxRemembered {
		e.sent = e.sent[n-maxRemembered:]
	}
	var needles []string
	for _, v := range e.sent {
		needles = append(needles, echoForms(v)...)
		if token, ok := strings.CutPrefix(v, e.scheme+" "); ok && e.scheme != "" && strings.TrimSpace(token) != "" {
			needles = append(needles, echoForms(strings.TrimSpace(token))...)
		}
	}
	// Folded once here, not on every answer (find compares folded bytes);
	// longest first, so "Bearer abc" goes before "abc".
	for i, n := range needles {
		needles[i] = string(asciiLower([]byte(n)))
	}
	slices.SortFunc(needles, func(a, b string) int {
		if d := len(b) - len(a); d != 0 {
			return d
		}
		return strings.Compare(a, b) // equal ones side by side, for Compact
	})
	e.needles = slices.Compact(needles)
}

func (e *echoes) snapshot() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.needles // replaced, never changed in place
}

// echoForms are the ways a backend may write a credential v back into its
// answer: as sent; quoted as Go's %q and %+q do; escaped as JSON encoders
// do (Go's with and without HTML escapes, and ASCII-only, as Jackson and
// Python may); URL-encoded (query and path); and in base64 (standard and URL
// alphabets, padded or not). A form equal to v is listed once.
func echoForms(v string) []string {
	forms := []string{
		v,
		unquote(strconv.Quote(v)),
		unquote(strconv.QuoteToASCII(v)),
		jsonEscape(v, true),
		jsonEscape(v, false),
		asciiJSON(jsonEscape(v, false)),
		url.QueryEscape(v),
		url.PathEscape(v),
		base64.StdEncoding.EncodeToString([]byte(v)),
		base64.URLEncoding.EncodeToString([]byte(v)),
		base64.RawStdEncoding.EncodeToString([]byte(v)),
		base64.RawURLEncoding.EncodeToString([]byte(v)),
	}
	slices.Sort(forms)
	return slices.Compact(forms)
}

// unquote drops the quotes strconv.Quote puts around its result.
func unquote(q string) string { return q[1 : len(q)-1] }

// jsonEscape is v as encoding/json writes it inside a string, without the
// quotes.
func jsonEscape(v string, html bool) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(html)
	_ = enc.Encode(v) // a string always encodes
	out := strings.TrimSuffix(b.String(), "\n")
	return out[1 : len(out)-1]
}

// asciiJSON writes every non-ASCII rune of a JSON-escaped string as \uXXXX
// (a surrogate pair above U+FFFF); encoding/json has no such option.
func asciiJSON(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			b.WriteRune(r)
		case r > 0xFFFF:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&b, "\\u%04x\\u%04x", r1, r2)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

// cleanText replaces every remembered credential in s with <redacted>.
func (e *echoes) cleanText(s string) (string, bool) {
	spans := e.find([]byte(s))
	if len(spans) == 0 {
		return s, false
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp[0]])
		b.WriteString(redactedText)
		last = sp[1]
	}
	b.WriteString(s[last:])
	return b.String(), true
}

// cleanBytes overwrites every remembered credential in b with '*', keeping
// the length: an HTTP error body is a protobuf Status, whose length prefixes
// must stay valid for the exporter to read its message.
func (e *echoes) cleanBytes(b []byte) bool {
	spans := e.find(b)
	for _, sp := range spans {
		for i := sp[0]; i < sp[1]; i++ {
			b[i] = '*'
		}
	}
	return len(spans) > 0
}

// find returns the byte ranges of b that hold a needle, in order and merged
// where they overlap. Letters are compared without case, since encoders
// differ on the case of hex digits (%c3%b6, \u00F6); ASCII-only folding
// keeps every byte where it was.
func (e *echoes) find(b []byte) [][2]int {
	needles := e.snapshot()
	if len(needles) == 0 {
		return nil
	}
	folded := asciiLower(bytes.Clone(b))
	var spans [][2]int
	for _, n := range needles {
		needle := []byte(n) // already folded by remember
		for off := 0; ; {
			i := bytes.Index(folded[off:], needle)
			if i < 0 {
				break
			}
			spans = append(spans, [2]int{off + i, off + i + len(needle)})
			off += i + len(needle)
		}
	}
	slices.SortFunc(spans, func(x, y [2]int) int { return x[0] - y[0] })
	merged := spans[:0]
	for _, sp := range spans {
		if n := len(merged); n > 0 && sp[0] <= merged[n-1][1] {
			merged[n-1][1] = max(merged[n-1][1], sp[1])
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

// asciiLower folds A-Z in b in place, byte by byte (bytes.ToLower decodes
// runes, and would move bytes of a binary body that is not UTF-8).
func asciiLower(b []byte) []byte {
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return b
}
