package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc/codes"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// The export contract of distribution/config.yaml and config-http.yaml:
// the OTLP_BACKEND_* variables, the token header, TLS, token rotation,
// refusing to start without what it needs, and rejected credentials.

// waitForToken sends the fixture every 200 ms (n counts the spans sent)
// until the backend's last request carries want as its authentication
// header; after 15 s it fails, naming what was awaited.
func waitForToken(t *testing.T, col *harness.Collector, backend *harness.Backend, n *int, want, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		*n += sendFixture(t, col).SpanCount()
		backend.WaitForSpans(*n, 15*time.Second)
		if got := lastHeader(backend, "authentication"); len(got) == 1 && got[0] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not used after 15 s; last header %q", what, lastHeader(backend, "authentication"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sendFixture sends the propagated bookinfo fixture to the collector.
func sendFixture(t *testing.T, col *harness.Collector) ptrace.Traces {
	t.Helper()
	td := harness.ReadTraces(t, fixturePropagated)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := harness.SendGRPC(ctx, col.GRPCEndpoint, td); err != nil {
		t.Fatalf("send: %v", err)
	}
	return td
}

// lastHeader is the named header of the backend's last accepted request.
func lastHeader(b *harness.Backend, name string) []string {
	reqs := b.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Accepted {
			return reqs[i].Headers[strings.ToLower(name)]
		}
	}
	return nil
}

func TestExportSendsTokenHeader(t *testing.T) {
	for _, transport := range []string{"grpc", "http"} {
		for _, tc := range []struct {
			name, header, scheme string
			wantHeader, want     string
		}{
			{"default-raw-token", "", "", "authentication", testToken},
			{"bearer-authorization", "Authorization", "Bearer", "authorization", "Bearer " + testToken},
			{"custom-header", "X-Api-Key", "", "x-api-key", testToken},
		} {
			t.Run(transport+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				backend := harness.StartBackend(t)
				env := shippedEnv(backend, transport, t.TempDir())
				if tc.header != "" {
					env["OTLP_BACKEND_AUTH_HEADER"] = tc.header
				}
				if tc.scheme != "" {
					env["OTLP_BACKEND_AUTH_SCHEME"] = tc.scheme
				}
				col := startShipped(t, transport, env)
				td := sendFixture(t, col)
				backend.WaitForSpans(td.SpanCount(), 15*time.Second)
				if got := lastHeader(backend, tc.wantHeader); len(got) != 1 || got[0] != tc.want {
					t.Errorf("backend got %s: %q, want %q", tc.wantHeader, got, tc.want)
				}
				if r := backend.Requests()[0]; r.Transport != transport {
					t.Errorf("backend got a %s request, want %s", r.Transport, transport)
				}
				if !strings.Contains(col.Logs(), "OTLP_BACKEND_INSECURE=true") {
					t.Error("plaintext to the backend without the warning at start")
				}
				assertNoToken(t, col.Logs(), testToken)
			})
		}
	}
}

// A token file (a mounted Secret) is re-read when it changes: the next
// export carries the new token, with no restart.
func TestExportTokenFileRotation(t *testing.T) {
	backend := harness.StartBackend(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("first-token-aaaa\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := shippedEnv(backend, "grpc", t.TempDir())
	delete(env, "OTLP_BACKEND_TOKEN")
	env["OTLP_BACKEND_TOKEN_FILE"] = tokenFile
	col := startShipped(t, "grpc", env)
	n := sendFixture(t, col).SpanCount()
	backend.WaitForSpans(n, 15*time.Second)
	if got := lastHeader(backend, "authentication"); len(got) != 1 || got[0] != "first-token-aaaa" {
		t.Fatalf("first token: got %q", got)
	}
	// Rotate as kubelet does for a Secret volume: a new file renamed over.
	tmp := filepath.Join(dir, "..token.new")
	if err := os.WriteFile(tmp, []byte("second-token-bbbb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, tokenFile); err != nil {
		t.Fatal(err)
	}
	waitForToken(t, col, backend, &n, "second-token-bbbb", "rotated token")
	assertNoToken(t, col.Logs(), "first-token-aaaa")
	assertNoToken(t, col.Logs(), "second-token-bbbb")
}

// The same for a Secret volume as kubelet lays it out: token -> ..data/token,
// ..data -> a timestamped directory; an update writes a new directory,
// swaps ..data atomically and removes the old directory.
func TestExportTokenFileRotationKubernetesSecret(t *testing.T) {
	backend := harness.StartBackend(t)
	vol := t.TempDir()
	writeGen := func(gen, token string) {
		if err := os.Mkdir(filepath.Join(vol, gen), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vol, gen, "token"), []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(vol, "..data_tmp")
		if err := os.Symlink(gen, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(vol, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeGen("..2026_11_22_01", "secret-gen-one")
	if err := os.Symlink("..data/token", filepath.Join(vol, "token")); err != nil {
		t.Fatal(err)
	}
	env := shippedEnv(backend, "http", t.TempDir())
	delete(env, "OTLP_BACKEND_TOKEN")
	env["OTLP_BACKEND_TOKEN_FILE"] = filepath.Join(vol, "token")
	col := startShipped(t, "http", env)
	n := sendFixture(t, col).SpanCount()
	backend.WaitForSpans(n, 15*time.Second)
	if got := lastHeader(backend, "authentication"); len(got) != 1 || got[0] != "secret-gen-one" {
		t.Fatalf("first token: got %q", got)
	}
	writeGen("..2026_11_22_02", "secret-gen-two")
	if err := os.RemoveAll(filepath.Join(vol, "..2026_11_22_01")); err != nil {
		t.Fatal(err)
	}
	waitForToken(t, col, backend, &n, "secret-gen-two", "rotated Secret")
	assertNoToken(t, col.Logs(), "secret-gen-")
}

// runToExit runs the binary with a shipped config on free ports and returns
// its output; it fails the test if the collector does not exit by itself.
func runToExit(t *testing.T, transport string, env map[string]string) string {
	t.Helper()
	ports, _ := harness.PortsOverride(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), "--config", shippedConfig(transport), "--config", ports)
	// No OTLP_BACKEND_* or MY_POD_IP from the outside: exactly the test's.
	cmd.Env = filterEnv(os.Environ(), env)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("collector kept running; want it to refuse to start:\n%s", out)
	}
	if err == nil {
		t.Fatalf("collector exited 0; want a failure:\n%s", out)
	}
	return string(out)
}

// filterEnv drops the OTLP_BACKEND_* and MY_POD_IP entries of base and
// appends env, so a variable is either set by the test or absent.
func filterEnv(base []string, env map[string]string) []string {
	var out []string
	for _, kv := range base {
		if strings.HasPrefix(kv, "OTLP_BACKEND_") || strings.HasPrefix(kv, "MY_POD_IP=") {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// Without an endpoint or a token the collector refuses to start, and says
// which variable is missing. It never starts with an empty header.
func TestExportRefusesToStartWithoutEndpointOrToken(t *testing.T) {
	queue := t.TempDir()
	for _, tc := range []struct {
		name, transport string
		env             map[string]string
		want            []string
	}{
		{"no-endpoint", "grpc", map[string]string{"OTLP_BACKEND_TOKEN": testToken, "OTLP_BACKEND_QUEUE_DIR": queue},
			[]string{"OTLP_BACKEND_ENDPOINT"}},
		{"no-token", "grpc", map[string]string{"OTLP_BACKEND_ENDPOINT": "backend.example:4317", "OTLP_BACKEND_QUEUE_DIR": queue},
			[]string{"OTLP_BACKEND_TOKEN", "OTLP_BACKEND_TOKEN_FILE"}},
		{"empty-token", "http", map[string]string{"OTLP_BACKEND_ENDPOINT": "https://backend.example", "OTLP_BACKEND_TOKEN": "", "OTLP_BACKEND_QUEUE_DIR": queue},
			[]string{"OTLP_BACKEND_TOKEN"}},
		{"nothing", "http", map[string]string{"OTLP_BACKEND_QUEUE_DIR": queue},
			[]string{"OTLP_BACKEND_ENDPOINT", "OTLP_BACKEND_TOKEN"}},
		{"token-file-missing", "grpc", map[string]string{"OTLP_BACKEND_ENDPOINT": "backend.example:4317",
			"OTLP_BACKEND_TOKEN_FILE": filepath.Join(queue, "no-such-token"), "OTLP_BACKEND_QUEUE_DIR": queue},
			[]string{"OTLP_BACKEND_TOKEN_FILE", "no-such-token"}},
		{"plaintext-http-without-opt-in", "http", map[string]string{"OTLP_BACKEND_ENDPOINT": "http://backend.example:4318",
			"OTLP_BACKEND_TOKEN": testToken, "OTLP_BACKEND_QUEUE_DIR": queue},
			[]string{"OTLP_BACKEND_INSECURE=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := runToExit(t, tc.transport, tc.env)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %s:\n%s", w, out)
				}
			}
			assertNoToken(t, out, testToken)
		})
	}
}

// The queue directory is created when it does not exist yet.
func TestExportCreatesQueueDir(t *testing.T) {
	backend := harness.StartBackend(t)
	queueDir := filepath.Join(t.TempDir(), "var", "lib", "otelcol-istio", "queue")
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", queueDir))
	backend.WaitForSpans(sendFixture(t, col).SpanCount(), 15*time.Second)
	entries, err := os.ReadDir(queueDir)
	if err != nil {
		t.Fatalf("queue dir not created: %v", err)
	}
	if len(entries) == 0 {
		t.Error("queue dir is empty: file_storage keeps no database there")
	}
}

// A 401/403 (Unauthenticated/PermissionDenied) is logged once as "backend
// rejected credentials", and the batch is not retried.
func TestExportRejectedCredentials(t *testing.T) {
	for _, tc := range []struct {
		transport string
		failure   harness.Failure
	}{
		{"grpc", harness.Failure{GRPCCode: codes.Unauthenticated}},
		{"grpc", harness.Failure{GRPCCode: codes.PermissionDenied}},
		{"http", harness.Failure{HTTPStatus: http.StatusUnauthorized}},
		{"http", harness.Failure{HTTPStatus: http.StatusForbidden}},
	} {
		t.Run(fmt.Sprintf("%s-%v%d", tc.transport, tc.failure.GRPCCode, tc.failure.HTTPStatus), func(t *testing.T) {
			t.Parallel()
			backend := harness.StartBackend(t)
			backend.SetFailure(tc.failure)
			col := startShipped(t, tc.transport, shippedEnv(backend, tc.transport, t.TempDir()))
			const sends = 5
			for range sends {
				sendFixture(t, col)
				time.Sleep(300 * time.Millisecond) // past the 200 ms batch timeout: separate exports
			}
			col.WaitForLog("backend rejected credentials", 10*time.Second)
			attempts := len(backend.Requests())
			time.Sleep(3 * time.Second) // a retry would come after 1 s
			if again := len(backend.Requests()); again != attempts {
				t.Errorf("backend saw %d attempts, then %d: rejected exports are being retried", attempts, again)
			}
			if attempts < 2 || attempts > sends {
				t.Errorf("backend saw %d attempts for %d sends, want one per export", attempts, sends)
			}
			if n := strings.Count(col.Logs(), "backend rejected credentials"); n != 1 {
				t.Errorf("'backend rejected credentials' logged %d times, want once", n)
			}
			// health_check, as shipped, says so on /status too.
			exporterID := shippedExporter(tc.transport)
			waitStatus(t, col, "rejected credentials", 20*time.Second, func(doc statusDoc) bool {
				e, ok := doc.Exporters[exporterID]
				return ok && !e.Delivering && e.LastError == "backend rejected credentials"
			})
			assertNoToken(t, col.Logs(), testToken)
		})
	}
}

// The token appears nowhere: not in logs at debug level, not in the debug
// exporter's detailed output, not on the health endpoint, not when the
// backend rejects it.
func TestExportTokenNeverShown(t *testing.T) {
	backend := harness.StartBackend(t)
	override := writeConfig(t, `
exporters:
  debug:
    verbosity: detailed
service:
  telemetry:
    logs:
      level: debug
  pipelines:
    traces:
      exporters: [otlp_grpc, debug]
`)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", t.TempDir()), override)
	backend.WaitForSpans(sendFixture(t, col).SpanCount(), 15*time.Second)
	backend.SetFailure(harness.Failure{GRPCCode: codes.Unauthenticated})
	sendFixture(t, col)
	col.WaitForLog("backend rejected credentials", 10*time.Second)
	col.WaitForLog("Span #", 5*time.Second) // the debug exporter did print spans
	for _, path := range []string{"/", "/status"} {
		assertNoToken(t, get(t, "http://"+col.HealthEndpoint+path), testToken)
	}
	col.Stop()
	assertNoToken(t, col.Logs(), testToken)
	if got := lastHeader(backend, "authentication"); len(got) != 1 || got[0] != testToken {
		t.Errorf("the token did reach the backend: %q", got)
	}
}

func assertNoToken(t *testing.T, text, token string) {
	t.Helper()
	if strings.Contains(text, token) {
		i := strings.Index(text, token)
		t.Errorf("the token appears in the output: ...%s...", text[max(0, i-200):i])
	}
}

// The receivers, health_check and the collector's own metrics bind to
// MY_POD_IP, IPv4 or IPv6 (the shipped configs put it in brackets, which
// net.Listen and the Prometheus reader accept for both), on the ports the
// OTLP_GRPC_PORT, OTLP_HTTP_PORT, HEALTH_CHECK_PORT and METRICS_PORT
// variables move (free ones here). A random 127.0.0.x address, or ::1, stands
// in for the pod IP. health_check reads the metrics where the config says
// (deploy's TestMetricsPortAgrees checks the manifests name the same port).
func TestShippedConfigBindsToPodIP(t *testing.T) {
	for _, podIP := range []string{fmt.Sprintf("127.0.0.%d", 2+time.Now().UnixNano()%250), "::1"} {
		t.Run(podIP, func(t *testing.T) {
			if strings.Contains(podIP, ":") {
				l, err := net.Listen("tcp", "[::1]:0")
				if err != nil {
					t.Skipf("no IPv6 loopback here: %v", err)
				}
				l.Close()
			}
			testBindsToPodIP(t, podIP)
		})
	}
}

func testBindsToPodIP(t *testing.T, podIP string) {
	backend := harness.StartBackend(t)
	env := shippedEnv(backend, "grpc", t.TempDir())
	env["MY_POD_IP"] = podIP
	ports := map[string]string{}
	for _, name := range []string{"OTLP_GRPC_PORT", "OTLP_HTTP_PORT", "HEALTH_CHECK_PORT", "METRICS_PORT"} {
		ports[name] = harness.FreePort(t)
		env[name] = ports[name]
	}
	cmd := exec.Command(harness.Binary(t), "--config", shippedConfig("grpc"))
	cmd.Env = filterEnv(os.Environ(), env)
	var logs harness.SyncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-exited
	})
	at := func(port string) string { return net.JoinHostPort(podIP, ports[port]) }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := harness.PollHealthy(ctx, at("HEALTH_CHECK_PORT"), exited); err != nil {
		t.Fatalf("no health_check on %s: %v\n%s", at("HEALTH_CHECK_PORT"), err, logs.String())
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	td := harness.ReadTraces(t, fixturePropagated)
	if err := harness.SendGRPC(ctx, at("OTLP_GRPC_PORT"), td); err != nil {
		t.Fatalf("OTLP/gRPC on %s: %v", at("OTLP_GRPC_PORT"), err)
	}
	if err := harness.SendHTTP(ctx, "http://"+at("OTLP_HTTP_PORT"), "proto", td); err != nil {
		t.Fatalf("OTLP/HTTP on %s: %v", at("OTLP_HTTP_PORT"), err)
	}
	backend.WaitForSpans(2*td.SpanCount(), 15*time.Second)
	// The exporter counts its spans just after the backend has them.
	metricsURL := "http://" + at("METRICS_PORT") + "/metrics"
	body := get(t, metricsURL)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(body, "otelcol_exporter_sent_spans") && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		body = get(t, metricsURL)
	}
	if !strings.Contains(body, "otelcol_exporter_sent_spans") {
		t.Errorf("no exporter metrics on %s:\n%s", metricsURL, tail(body, 1000))
	}
	var status struct {
		Delivery struct {
			Source    string `json:"source"`
			ScrapedAt string `json:"scraped_at"`
		} `json:"delivery"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for status.Delivery.ScrapedAt == "" && time.Now().Before(deadline) {
		_ = json.Unmarshal([]byte(get(t, "http://"+at("HEALTH_CHECK_PORT")+"/status")), &status)
		time.Sleep(200 * time.Millisecond)
	}
	if status.Delivery.Source != metricsURL || status.Delivery.ScrapedAt == "" {
		t.Errorf("health_check reads %q (scraped at %q), want %s", status.Delivery.Source, status.Delivery.ScrapedAt, metricsURL)
	}
}

// Two collectors with the shipped config run side by side on one host, their
// ports moved by env; a third on the first one's ports fails to start, and
// says why without a logs flush error (there is no logs listener any more).
func TestShippedConfigTwiceOnOneHost(t *testing.T) {
	backend := harness.StartBackend(t)
	var cols []*harness.Collector
	for range 2 {
		cols = append(cols, harness.StartCollector(t, harness.CollectorOptions{
			Configs:    []string{shippedConfig("grpc")},
			Env:        shippedEnv(backend, "grpc", t.TempDir()),
			PortsByEnv: true,
		}))
	}
	td := harness.ReadTraces(t, fixturePropagated)
	for _, col := range cols {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := harness.SendGRPC(ctx, col.GRPCEndpoint, td); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	backend.WaitForSpans(2*td.SpanCount(), 15*time.Second)

	env := shippedEnv(backend, "grpc", t.TempDir())
	env["MY_POD_IP"] = "127.0.0.1"
	_, env["OTLP_GRPC_PORT"], _ = net.SplitHostPort(cols[0].GRPCEndpoint)
	for _, name := range []string{"OTLP_HTTP_PORT", "HEALTH_CHECK_PORT", "METRICS_PORT"} {
		env[name] = harness.FreePort(t)
	}
	cmd := exec.Command(harness.Binary(t), "--config", shippedConfig("grpc"))
	cmd.Env = filterEnv(os.Environ(), env)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("a collector on a taken port started:\n%s", out)
	}
	if !strings.Contains(string(out), "address already in use") || strings.Contains(string(out), "failed to shutdown logger") {
		t.Errorf("want the bind error and no logger shutdown error:\n%s", tail(string(out), 2000))
	}
}
