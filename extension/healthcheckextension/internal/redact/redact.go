// Package redact scrubs credentials from free text: the errors components
// report through componentstatus, shown in /status.
package redact // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/redact"

import (
	"regexp"
	"strings"
)

type redaction struct {
	re   *regexp.Regexp
	repl string
}

// redactions run in order; each keeps the key and replaces the value.
var redactions = []redaction{
	// "Bearer abc", "Basic dXNlcjpwdw=="
	{regexp.MustCompile(`(?i)\b(bearer|basic)\s+[^\s,;"'\]\}]+`), "${1} <redacted>"},
	// "authorization: x", "api-key=x", "token: x", "x-api-key x", "password=x"
	{regexp.MustCompile(`(?i)\b((?:proxy-)?authorization|token|access[-_]?token|api[-_]?key|apikey|password|passwd|secret|x-[a-z0-9-]*(?:key|token|auth)[a-z0-9-]*)(["']?\s*[:=]\s*|\s+)("[^"]*"|'[^']*'|[^\s,;&"'\]\}]+)`), "${1}${2}<redacted>"},
	// user:password@host in URLs
	{regexp.MustCompile(`(//[^/\s:@]+:)[^@\s/]+@`), "${1}<redacted>@"},
	// query parameter values long enough to be a credential
	{regexp.MustCompile(`([?&][A-Za-z0-9_.-]+=)[^&\s]{8,}`), "${1}<redacted>"},
}

// opaque matches long runs that may be a key or JWT; only runs that mix
// letters and digits are replaced, so words and identifiers survive.
var opaque = regexp.MustCompile(`[A-Za-z0-9+/_=.-]{24,}`)

// Redact removes anything that looks like a credential from text.
func Redact(text string) string {
	for _, r := range redactions {
		text = r.re.ReplaceAllString(text, r.repl)
	}
	return opaque.ReplaceAllStringFunc(text, func(s string) string {
		if strings.ContainsAny(s, "0123456789") && strings.IndexFunc(s, isLetter) >= 0 && !strings.Contains(s, "/") {
			return "<redacted>"
		}
		return s
	})
}

func isLetter(r rune) bool { return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') }
