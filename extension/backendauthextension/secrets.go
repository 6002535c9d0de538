package backendauthextension // import "github.com/otelcol-istio/otelcol-istio/extension/backendauthextension"

import (
	"bytes"
	"slices"
	"strings"
	"sync"
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
	mu sync.Mutex
	// values are credential strings to remove: each header value sent and
	// the token inside it, longest first.
	values []string
}

// remember notes a header value that was sent (e.g. "Bearer abc").
func (e *echoes) remember(headerValue string) {
	headerValue = strings.TrimSpace(headerValue)
	if headerValue == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if slices.Contains(e.values, headerValue) {
		return
	}
	add := []string{headerValue}
	if _, token, ok := strings.Cut(headerValue, " "); ok && strings.TrimSpace(token) != "" {
		add = append(add, strings.TrimSpace(token))
	}
	for _, v := range add {
		if !slices.Contains(e.values, v) {
			e.values = append(e.values, v)
		}
	}
	// Forget the oldest beyond the limit (each value adds at most two).
	if n := len(e.values); n > 2*maxRemembered {
		e.values = e.values[n-2*maxRemembered:]
	}
}

func (e *echoes) snapshot() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	vals := slices.Clone(e.values)
	// Longest first, so "Bearer abc" goes before "abc".
	slices.SortFunc(vals, func(a, b string) int { return len(b) - len(a) })
	return vals
}

// cleanText replaces every remembered credential in s with <redacted>.
func (e *echoes) cleanText(s string) (string, bool) {
	changed := false
	for _, v := range e.snapshot() {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, redactedText)
			changed = true
		}
	}
	return s, changed
}

// cleanBytes overwrites every remembered credential in b with '*', keeping
// the length: an HTTP error body is a protobuf Status, whose length prefixes
// must stay valid for the exporter to read its message.
func (e *echoes) cleanBytes(b []byte) bool {
	changed := false
	for _, v := range e.snapshot() {
		needle := []byte(v)
		for i := bytes.Index(b, needle); i >= 0; {
			for j := range needle {
				b[i+j] = '*'
			}
			changed = true
			next := bytes.Index(b[i+len(needle):], needle)
			if next < 0 {
				break
			}
			i += len(needle) + next
		}
	}
	return changed
}
