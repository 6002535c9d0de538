// Package errclass turns export errors into a short, secret-free class such as
// "backend rejected credentials", and scrubs secrets from free text.
//
// Classes are a fixed vocabulary on purpose: an exporter's error text can carry
// URLs, header values or backend messages, so /status never shows that text.
package errclass // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/errclass"

import (
	"regexp"
	"strings"
)

// The classes /status reports in last_error.
const (
	Credentials  = "backend rejected credentials"
	Unreachable  = "backend unreachable"
	Overloaded   = "backend overloaded"
	Timeout      = "backend timed out"
	RejectedData = "backend rejected data"
	TLS          = "TLS handshake failed"
	QueueFull    = "sending queue full"
	Shutdown     = "exporter shutting down"
	Unknown      = "export failed"
	// NoDelivery is used when spans arrive, nothing is delivered, and no error
	// has been seen yet: the exporter is still retrying (see README).
	NoDelivery = "no delivery (exporter retrying)"
)

type rule struct {
	class string
	code  string
	re    *regexp.Regexp
}

// rules are tried in order, so the more specific text wins: an HTTP 503 is
// "overloaded" although otlphttp maps it to gRPC Unavailable, and a gRPC
// Unavailable caused by a refused connection is "unreachable".
var rules = []rule{
	{Credentials, "Unauthenticated", regexp.MustCompile(`(?i)code = Unauthenticated|HTTP Status Code 401\b|\b401 Unauthorized`)},
	{Credentials, "PermissionDenied", regexp.MustCompile(`(?i)code = PermissionDenied|HTTP Status Code 403\b|\b403 Forbidden`)},
	{Overloaded, "HTTP 429", regexp.MustCompile(`(?i)HTTP Status Code 429\b|\b429 Too Many Requests`)},
	{Overloaded, "HTTP 503", regexp.MustCompile(`(?i)HTTP Status Code 503\b|\b503 Service Unavailable`)},
	{Overloaded, "ResourceExhausted", regexp.MustCompile(`(?i)code = ResourceExhausted`)},
	{TLS, "TLS", regexp.MustCompile(`(?i)x509:|tls: |certificate signed by unknown authority|authentication handshake failed`)},
	{Unreachable, "ConnectionRefused", regexp.MustCompile(`(?i)connection refused`)},
	{Unreachable, "DNS", regexp.MustCompile(`(?i)no such host|name resolution`)},
	{Unreachable, "ConnectionReset", regexp.MustCompile(`(?i)connection reset|broken pipe|EOF\b`)},
	{Unreachable, "Unavailable", regexp.MustCompile(`(?i)code = Unavailable|HTTP Status Code 50[24]\b`)},
	{Timeout, "DeadlineExceeded", regexp.MustCompile(`(?i)code = DeadlineExceeded|context deadline exceeded|i/o timeout|Client\.Timeout`)},
	{RejectedData, "InvalidArgument", regexp.MustCompile(`(?i)code = InvalidArgument|HTTP Status Code 400\b`)},
	{RejectedData, "HTTP 413", regexp.MustCompile(`(?i)HTTP Status Code 413\b|larger than max|message too large`)},
	{QueueFull, "QueueFull", regexp.MustCompile(`(?i)sending queue is full|queue is full`)},
	{Shutdown, "Shutdown", regexp.MustCompile(`(?i)shutdown|shutting down`)},
}

// Classify returns the class and a short code for an export error text.
// Neither contains any part of text beyond the fixed vocabulary.
func Classify(text string) (class, code string) {
	for _, r := range rules {
		if r.re.MatchString(text) {
			return r.class, r.code
		}
	}
	return Unknown, "Other"
}

// FromErrorType maps the error.type attribute exporterhelper records on
// otelcol_exporter_send_failed_spans (a gRPC code name, or one of
// "Shutdown", "Canceled", "Deadline_Exceeded", "_OTHER") to a class.
func FromErrorType(t string) (class, code string) {
	switch t {
	case "Unauthenticated", "PermissionDenied":
		return Credentials, t
	case "Unavailable":
		return Unreachable, t
	case "ResourceExhausted":
		return Overloaded, t
	case "DeadlineExceeded", "Deadline_Exceeded":
		return Timeout, "DeadlineExceeded"
	case "InvalidArgument", "FailedPrecondition", "OutOfRange":
		return RejectedData, t
	case "Shutdown", "Canceled":
		return Shutdown, t
	}
	return Unknown, "Other"
}

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
