package redact

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

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
