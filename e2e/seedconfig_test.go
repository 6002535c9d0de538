package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// seedToken is the made-up token in testdata/seed-collector.yaml.
const seedToken = "seed-guide-token"

// The seed's config as users bring it: the one key upstream removed without
// a replacement under the same name (`logging`) stops it, with a message
// that names what to write; nothing else in it is refused, and the token in
// it is not echoed.
func TestSeedConfigAsIs(t *testing.T) {
	out, err := harness.RunBinary(t, nil, "validate", "--config", "testdata/seed-collector.yaml")
	if err == nil {
		t.Fatalf("validate accepted the logging exporter:\n%s", out)
	}
	for _, want := range []string{"the logging exporter has been deprecated, use the debug exporter instead"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate's message lacks %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"invalid keys", "health_check", seedToken} {
		if strings.Contains(out, unwanted) {
			t.Errorf("validate's message has %q:\n%s", unwanted, out)
		}
	}
}

// seedWithDebug is the seed's config after the one change the README's
// table asks for: `logging` (loglevel: debug) becomes `debug` (verbosity:
// detailed).
func seedWithDebug(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/seed-collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for old, repl := range map[string]string{
		"  logging:\n    loglevel: debug\n": "  debug:\n    verbosity: detailed\n",
		"exporters: [logging, otlp]":        "exporters: [debug, otlp]",
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("seed config has no %q", old)
		}
		s = strings.Replace(s, old, repl, 1)
	}
	path := filepath.Join(t.TempDir(), "seed-debug.yaml")
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// With `logging` replaced, the seed's config validates and starts as it is:
// contrib's old `health_check: {port: ...}` listens on every interface with a
// warning naming `endpoint`, the deprecated `otlp` exporter name still works,
// and spans reach the backend with the seed's Authentication header.
func TestSeedConfigWithDebugStarts(t *testing.T) {
	seed := seedWithDebug(t)
	if out, err := harness.RunBinary(t, nil, "validate", "--config", seed); err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}

	backend := harness.StartBackend(t)
	// Only what a test must move: free ports instead of 4317, 4318, 13133
	// and 8888, and the harness backend instead of the seed's host. The
	// health check keeps the seed's `port` key.
	grpcEP, httpEP := "127.0.0.1:"+harness.FreePort(t), "127.0.0.1:"+harness.FreePort(t)
	healthPort, metricsPort := harness.FreePort(t), harness.FreePort(t)
	override := filepath.Join(t.TempDir(), "ports.yaml")
	if err := os.WriteFile(override, []byte(fmt.Sprintf(`
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
exporters:
  otlp:
    endpoint: %s
extensions:
  health_check:
    port: %s
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %s
`, grpcEP, httpEP, backend.GRPCEndpoint(), healthPort, metricsPort)), 0o600); err != nil {
		t.Fatal(err)
	}

	logs := &harness.SyncBuffer{}
	cmd := exec.Command(harness.Binary(t), "--config", seed, "--config", override)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("collector logs:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := harness.PollHealthy(ctx, net.JoinHostPort("127.0.0.1", healthPort), done); err != nil {
		t.Fatalf("the seed's config did not start healthy on port %s: %v", healthPort, err)
	}

	warning := fmt.Sprintf(`"port: %s" is contrib's removed key, read as endpoint "0.0.0.0:%s"`, healthPort, healthPort)
	if !strings.Contains(logs.String(), warning) || !strings.Contains(logs.String(), "Write endpoint:") {
		t.Errorf("no warning naming endpoint for the legacy port; want %s", warning)
	}

	td := harness.ReadTraces(t, "testdata/01-bookinfo-propagated-app-label-ns-istio125.json")
	want := td.SpanCount()
	if err := harness.SendGRPC(ctx, grpcEP, td); err != nil {
		t.Fatal(err)
	}
	backend.WaitForSpans(want, 20*time.Second)
	for _, r := range backend.Requests() {
		if got := r.Headers["authentication"]; len(got) != 1 || got[0] != seedToken {
			t.Errorf("export carried Authentication %q, want the seed's header", got)
		}
	}
	if strings.Contains(logs.String(), seedToken) {
		t.Error("the token appears in the collector's logs")
	}
}

// config-http.yaml with a gRPC-style host:port endpoint (what the seed's
// users have) names the variable and the https:// form to write.
func TestHTTPConfigEndpointFormError(t *testing.T) {
	cfg := filepath.Join(harness.RepoRoot(), "distribution", "config-http.yaml")
	env := map[string]string{"OTLP_BACKEND_ENDPOINT": "ingest.backend.example:4318", "OTLP_BACKEND_TOKEN": seedToken, "OTLP_BACKEND_QUEUE_DIR": t.TempDir()}
	out, err := harness.RunBinary(t, env, "validate", "--config", cfg)
	if err == nil {
		t.Fatalf("validate accepted a host:port endpoint for OTLP/HTTP:\n%s", out)
	}
	for _, want := range []string{"OTLP_BACKEND_ENDPOINT", "write https://ingest.backend.example:4318"} {
		if !strings.Contains(out, want) {
			t.Errorf("the error lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, seedToken) {
		t.Errorf("the error shows the token:\n%s", out)
	}
	env["OTLP_BACKEND_ENDPOINT"] = "https://ingest.backend.example:4318"
	if out, err := harness.RunBinary(t, env, "validate", "--config", cfg); err != nil {
		t.Errorf("the https:// form is refused: %v\n%s", err, out)
	}
}
