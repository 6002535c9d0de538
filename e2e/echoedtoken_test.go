package e2e

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// Issue 29 item 2: a backend that echoes the auth header in escaped or
// encoded form (Go's %q and %+q, JSON, URL encoding, base64) gets no form of
// the token into the logs, the export errors, /status or the page, over gRPC
// and HTTP, for tokens that escaping changes. The header is sent as
// "Bearer <token>", so the echoed value has a space in it.
func TestEchoedTokenRedactedInEveryForm(t *testing.T) {
	tokens := map[string]string{
		"quotes":     `tok"Zq\7x9-4f2a`,
		"backslash":  `a\b\\c-123\n-4f2a`,
		"non-ascii":  "tök-ключ-密钥-🔑9",
		"url-unsafe": "a+b/c=d&e?f%20-4f2a",
	}
	for _, transport := range []string{"grpc", "http"} {
		for name, token := range tokens {
			t.Run(transport+"/"+name, func(t *testing.T) {
				if transport == "grpc" && strings.ContainsFunc(token, func(r rune) bool { return r > 0x7e }) {
					t.Skip("gRPC metadata cannot carry non-ASCII: grpc-go refuses to send it, naming only the header")
				}
				t.Parallel()
				backend := harness.StartBackend(t)
				env := shippedEnv(backend, transport, t.TempDir())
				env["OTLP_BACKEND_TOKEN"] = token
				env["OTLP_BACKEND_AUTH_HEADER"] = "Authorization"
				env["OTLP_BACKEND_AUTH_SCHEME"] = "Bearer"
				col := startShipped(t, transport, env, levelOverride(t, "debug"))
				backend.SetFailure(harness.Failure{GRPCCode: codes.InvalidArgument, HTTPStatus: 400, EchoHeader: "Authorization", EchoForms: true})
				sendSpans(t, col, spans(3))
				waitStatus(t, col, "rejected data", 20*time.Second, func(d statusDoc) bool {
					return d.Exporters[shippedExporter(transport)].LastError == "backend rejected data"
				})
				col.WaitForLog("refused Authorization; raw: ", 10*time.Second)
				if got := backend.Requests()[0].Headers["authorization"]; len(got) != 1 || got[0] != "Bearer "+token {
					t.Fatalf("the backend got authorization %q: the test would prove nothing", got)
				}
				statusJSON := getWith(t, "http://"+col.HealthEndpoint+"/status", "application/json")
				page := getWith(t, "http://"+col.HealthEndpoint+"/status?format=html", "text/html")
				col.Stop()
				assertNoTokenForm(t, "the logs", col.Logs(), token)
				assertNoTokenForm(t, "/status", statusJSON, token)
				assertNoTokenForm(t, "the page", html.UnescapeString(page), token)
			})
		}
	}
}

// assertNoTokenForm fails if text holds token, or "Bearer "+token, in any of
// harness.EchoForms, as is or JSON-escaped once more (as a log encoder writes
// an error field), letters compared without case.
func assertNoTokenForm(t *testing.T, where, text, token string) {
	t.Helper()
	lower := strings.ToLower(text)
	for _, v := range []string{token, "Bearer " + token} {
		for _, form := range harness.EchoForms {
			f := strings.Trim(form.Encode(v), `"`)
			quoted, _ := json.Marshal(f)
			for _, needle := range []string{f, strings.Trim(string(quoted), `"`)} {
				if i := strings.Index(lower, strings.ToLower(needle)); i >= 0 {
					t.Errorf("%s hold the token in %s form: ...%s...", where, form.Name, text[max(0, i-120):min(len(text), i+len(needle)+40)])
				}
			}
		}
	}
}

func getWith(t *testing.T, url, accept string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
