package errclass

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The texts are the errors exporterhelper logs for the otlp_grpc and otlp_http
// exporters of v0.162.0 (see their processError and export functions).
func TestClassify(t *testing.T) {
	tests := []struct {
		text, class, code string
	}{
		{`rpc error: code = Unauthenticated desc = invalid token`, Credentials, "Unauthenticated"},
		{`rpc error: code = PermissionDenied desc = tenant not allowed`, Credentials, "PermissionDenied"},
		{`not retryable error: Permanent error: rpc error: code = Unknown desc = error exporting items, request to https://otlp.example.com/v1/traces responded with HTTP Status Code 401`, Credentials, "Unauthenticated"},
		{`Permanent error: error exporting items, request to http://x/v1/traces responded with HTTP Status Code 403, Message=forbidden, Details=[]`, Credentials, "PermissionDenied"},
		{`rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:4317: connect: connection refused"`, Unreachable, "ConnectionRefused"},
		{`failed to make an HTTP request: Post "http://127.0.0.1:4318/v1/traces": dial tcp 127.0.0.1:4318: connect: connection refused`, Unreachable, "ConnectionRefused"},
		{`rpc error: code = Unavailable desc = name resolver error: produced zero addresses`, Unreachable, "Unavailable"},
		{`dial tcp: lookup backend.invalid: no such host`, Unreachable, "DNS"},
		{`Throttle (30s), error: error exporting items, request to http://x/v1/traces responded with HTTP Status Code 429`, Overloaded, "HTTP 429"},
		{`error exporting items, request to http://x/v1/traces responded with HTTP Status Code 503`, Overloaded, "HTTP 503"},
		{`rpc error: code = ResourceExhausted desc = rate limited`, Overloaded, "ResourceExhausted"},
		{`rpc error: code = DeadlineExceeded desc = context deadline exceeded`, Timeout, "DeadlineExceeded"},
		{`rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`, TLS, "TLS"},
		{`Permanent error: rpc error: code = InvalidArgument desc = bad span`, RejectedData, "InvalidArgument"},
		{`sending queue is full`, QueueFull, "QueueFull"},
		{`something odd`, Unknown, "Other"},
	}
	for _, tt := range tests {
		class, code := Classify(tt.text)
		assert.Equal(t, tt.class, class, tt.text)
		assert.Equal(t, tt.code, code, tt.text)
	}
}

func TestFromErrorType(t *testing.T) {
	for typ, want := range map[string]string{
		"Unauthenticated":   Credentials,
		"PermissionDenied":  Credentials,
		"Unavailable":       Unreachable,
		"ResourceExhausted": Overloaded,
		"Deadline_Exceeded": Timeout,
		"InvalidArgument":   RejectedData,
		"Shutdown":          Shutdown,
		"_OTHER":            Unknown,
	} {
		class, _ := FromErrorType(typ)
		assert.Equal(t, want, class, typ)
	}
}

func TestRedact(t *testing.T) {
	const token = "s3cr3tT0kenValue42"
	tests := map[string]string{
		"authorization: Bearer " + token:                                     "authorization: <redacted> <redacted>",
		"header Authorization=" + token + " rejected":                        "header Authorization=<redacted> rejected",
		"x-api-key: " + token:                                                "x-api-key: <redacted>",
		"api_key=" + token + "&x=1":                                          "api_key=<redacted>&x=1",
		"https://user:" + token + "@backend:4318/v1/traces":                  "https://user:<redacted>@backend:4318/v1/traces",
		"https://backend/v1/traces?sig=" + token:                             "https://backend/v1/traces?sig=<redacted>",
		"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc123def":                 "jwt <redacted>",
		"listen tcp 0.0.0.0:4317: bind: address already in use":              "listen tcp 0.0.0.0:4317: bind: address already in use",
		"open /var/run/secrets/kubernetes.io/serviceaccount/token1234567890": "open /var/run/secrets/kubernetes.io/serviceaccount/token1234567890",
	}
	for in, want := range tests {
		got := Redact(in)
		assert.Equal(t, want, got, in)
		assert.NotContains(t, got, token)
	}
}
