package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// The reliability tests run the shipped configs (distribution/config*.yaml)
// with the built binary, a steady load of uniquely numbered spans, and the
// harness backend. Each logs a tally (sent, accepted, refused, delivered,
// lost, duplicated) and asserts on it. OTELCOL_ISTIO_SOAK=1 makes the
// outages and loads longer.

const (
	loadRate  = 2000 // spans per second, about a busy mesh's collector
	loadBatch = 100  // spans per request, as an Envoy flush
	// testToken is what the tests put in OTLP_BACKEND_TOKEN.
	testToken = "e2e-token-5d41402abc4b2a76"
)

func soak() bool { return os.Getenv("OTELCOL_ISTIO_SOAK") != "" }

// soakOr returns long under OTELCOL_ISTIO_SOAK, short otherwise.
func soakOr(short, long time.Duration) time.Duration {
	if soak() {
		return long
	}
	return short
}

// shippedConfig is the path of a config we ship: "grpc" is config.yaml,
// "http" config-http.yaml.
func shippedConfig(transport string) string {
	name := "config.yaml"
	if transport == "http" {
		name = "config-http.yaml"
	}
	return filepath.Join(harness.RepoRoot(), "distribution", name)
}

// shippedEnv points a shipped config at the harness backend, in plaintext
// (the harness backend has no TLS; the TLS tests put a TLS proxy in front).
func shippedEnv(backend *harness.Backend, transport, queueDir string) map[string]string {
	endpoint := backend.GRPCEndpoint()
	if transport == "http" {
		endpoint = backend.HTTPEndpoint()
	}
	return map[string]string{
		"OTLP_BACKEND_ENDPOINT":  endpoint,
		"OTLP_BACKEND_TOKEN":     testToken,
		"OTLP_BACKEND_INSECURE":  "true",
		"OTLP_BACKEND_QUEUE_DIR": queueDir,
	}
}

// writeConfig writes a config fragment to merge over a shipped config.
func writeConfig(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "override.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startShipped starts a shipped config, with optional fragments merged over it.
func startShipped(t *testing.T, transport string, env map[string]string, overrides ...string) *harness.Collector {
	t.Helper()
	return harness.StartCollector(t, harness.CollectorOptions{
		Configs: append([]string{shippedConfig(transport)}, overrides...),
		Env:     env,
	})
}

// 1. The backend is down for 20 s under steady load: the persistent queue
// holds everything, retries never give up, and after the backend returns
// every accepted span arrives.
func TestBackendOutageLosesNothing(t *testing.T) {
	backend := harness.StartBackend(t)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", t.TempDir()))
	load := startLoad(t, col.GRPCEndpoint, loadRate, loadBatch)

	time.Sleep(5 * time.Second)
	backend.Stop()
	outage := soakOr(20*time.Second, 120*time.Second)
	time.Sleep(outage)
	if err := backend.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	load.Stop()

	tl := load.waitDelivered(backend, 90*time.Second)
	t.Logf("backend down %s under %d spans/s: %s", outage, loadRate, tl)
	if tl.Accepted < loadRate*20 {
		t.Errorf("only %d spans accepted: the load did not run", tl.Accepted)
	}
	if tl.Lost != 0 {
		t.Errorf("%d accepted spans never reached the backend", tl.Lost)
	}
	if tl.Refused != 0 {
		t.Errorf("%d spans refused during a %s outage: the queue should have held them (codes %v)", tl.Refused, outage, load.errorCodes())
	}
}

// 2. SIGTERM under load: the collector stops taking spans, keeps what it
// accepted in the persistent queue, and sends it after the restart.
func TestSIGTERMRestartLosesNothing(t *testing.T) {
	backend := harness.StartBackend(t)
	queueDir := t.TempDir()
	env := shippedEnv(backend, "grpc", queueDir)
	col := startShipped(t, "grpc", env)
	load := startLoad(t, col.GRPCEndpoint, loadRate, loadBatch)

	time.Sleep(soakOr(5*time.Second, 30*time.Second))
	if err := col.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := col.Wait(30 * time.Second); err != nil {
		t.Fatalf("collector did not exit cleanly on SIGTERM: %v\n%s", err, col.Logs())
	}
	col2 := startShipped(t, "grpc", env)
	load.retarget(col2.GRPCEndpoint)
	time.Sleep(5 * time.Second)
	load.Stop()

	tl := load.waitDelivered(backend, 60*time.Second)
	t.Logf("SIGTERM restart under %d spans/s: %s", loadRate, tl)
	if tl.Accepted < loadRate*5 {
		t.Errorf("only %d spans accepted: the load did not run", tl.Accepted)
	}
	if tl.Lost != 0 {
		t.Errorf("%d accepted spans lost across a SIGTERM restart", tl.Lost)
	}
}

// 3. SIGKILL under load, with the persistent queue: every span whose sender
// got OK was already in the queue on disk, and is delivered after the
// restart. The same crash with the batch processor in the pipeline loses
// what it held in memory (its batching window): that is why the shipped
// configs batch in the exporter, after the queue. The batch-processor run
// measures that window and checks it stays bounded.
func TestSIGKILLWithPersistentQueue(t *testing.T) {
	const batchProcessor = `
processors:
  batch:
    timeout: 200ms
    send_batch_size: 1024
    send_batch_max_size: 4096
service:
  pipelines:
    traces:
      processors: [memory_limiter, istio_span, batch]
`
	for _, tc := range []struct {
		name     string
		override []string
		// maxLost bounds what the crash may lose of the accepted spans.
		maxLost int
	}{
		// Shipped: batching in the exporter, after the persistent queue.
		{name: "exporter-batching", maxLost: 0},
		// One batch processor flush (send_batch_max_size) plus what arrives
		// during its 200 ms timeout: the most a crash can take from memory.
		{name: "batch-processor", override: []string{batchProcessor}, maxLost: 4096 + loadRate/5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := harness.StartBackend(t)
			queueDir := t.TempDir()
			env := shippedEnv(backend, "grpc", queueDir)
			var overrides []string
			for _, o := range tc.override {
				overrides = append(overrides, writeConfig(t, o))
			}
			col := startShipped(t, "grpc", env, overrides...)
			load := startLoad(t, col.GRPCEndpoint, loadRate, loadBatch)

			// Slow the backend a little so that the queue holds spans
			// when the kill comes, as it would under real latency.
			backend.SetFailure(harness.Failure{Delay: 300 * time.Millisecond})
			time.Sleep(soakOr(5*time.Second, 30*time.Second))
			col.Kill()
			backend.SetFailure(harness.Failure{})
			col2 := startShipped(t, "grpc", env, overrides...)
			load.retarget(col2.GRPCEndpoint)
			time.Sleep(3 * time.Second)
			load.Stop()

			timeout := 60 * time.Second
			if tc.maxLost > 0 {
				timeout = 20 * time.Second // losses are expected: do not wait a minute for them
			}
			tl := load.waitDelivered(backend, timeout)
			t.Logf("SIGKILL under %d spans/s, %s: %s", loadRate, tc.name, tl)
			if tl.Accepted < loadRate*5 {
				t.Errorf("only %d spans accepted: the load did not run", tl.Accepted)
			}
			if tl.Lost > tc.maxLost {
				t.Errorf("a crash lost %d accepted spans, want at most %d", tl.Lost, tc.maxLost)
			}
		})
	}
}

// 4. The backend is slow and refusing (Unavailable / 503). The exporter
// retries; once its queue is full the collector refuses new spans with a
// retryable status, so senders know; nothing accepted is dropped; and the
// memory limiter keeps RSS under its limit throughout.
func TestBackendRefusingBackpressure(t *testing.T) {
	const limitMiB = 256
	override := fmt.Sprintf(`
processors:
  memory_limiter:
    limit_percentage: 0
    spike_limit_percentage: 0
    limit_mib: %d
    spike_limit_mib: 64
exporters:
  %%s:
    sending_queue:
      queue_size: 10000
`, limitMiB)
	for _, tc := range []struct {
		name, transport string
		failure         harness.Failure
	}{
		{"grpc-unavailable", "grpc", harness.Failure{GRPCCode: codes.Unavailable, Delay: 200 * time.Millisecond}},
		{"http-503", "http", harness.Failure{HTTPStatus: 503, Delay: 200 * time.Millisecond}},
		{"http-429", "http", harness.Failure{HTTPStatus: 429}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := harness.StartBackend(t)
			exporter := map[string]string{"grpc": "otlp_grpc", "http": "otlp_http"}[tc.transport]
			col := startShipped(t, tc.transport, shippedEnv(backend, tc.transport, t.TempDir()),
				writeConfig(t, fmt.Sprintf(override, exporter)))
			backend.SetFailure(tc.failure)
			load := startLoad(t, col.GRPCEndpoint, loadRate, loadBatch)

			maxRSS := 0.0
			end := time.Now().Add(soakOr(8*time.Second, 120*time.Second))
			for time.Now().Before(end) {
				maxRSS = max(maxRSS, scrapeMetric(t, col, "otelcol_process_memory_rss"))
				time.Sleep(500 * time.Millisecond)
			}
			load.Stop()
			backend.SetFailure(harness.Failure{})
			tl := load.waitDelivered(backend, 90*time.Second)
			errs := load.errorCodes()
			t.Logf("backend answering %+v under %d spans/s: %s; sender saw %v; max RSS %.0f MiB (limit %d MiB)",
				tc.failure, loadRate, tl, errs, maxRSS/(1<<20), limitMiB)

			if tl.Lost != 0 {
				t.Errorf("%d accepted spans lost while the backend refused", tl.Lost)
			}
			if tl.Refused == 0 {
				t.Errorf("the queue (10000 spans) should have filled and the collector refused spans")
			}
			for code := range errs {
				if code != codes.Unavailable && code != codes.ResourceExhausted {
					t.Errorf("sender got %v, want only retryable Unavailable/ResourceExhausted", code)
				}
			}
			if maxRSS == 0 {
				t.Error("no RSS figure scraped from the collector's metrics")
			} else if maxRSS >= limitMiB<<20 {
				t.Errorf("RSS reached %.0f MiB, limit %d MiB", maxRSS/(1<<20), limitMiB)
			}
			if backend.SpanCount() < tl.Delivered {
				t.Errorf("backend count %d < delivered %d", backend.SpanCount(), tl.Delivered)
			}
		})
	}
}

// A backend answering ResourceExhausted without RetryInfo says, in the OTLP
// spec, that retrying will not help: the gRPC exporter drops the batch. That
// is a loss, but never a silent one: each dropped span is counted in
// otelcol_exporter_send_failed_spans and logged.
func TestBackendResourceExhaustedIsNotSilent(t *testing.T) {
	backend := harness.StartBackend(t)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", t.TempDir()))
	backend.SetFailure(harness.Failure{GRPCCode: codes.ResourceExhausted})
	load := startLoad(t, col.GRPCEndpoint, loadRate, loadBatch)
	time.Sleep(3 * time.Second)
	load.Stop()
	var failed float64
	deadline := time.Now().Add(30 * time.Second)
	tl := load.count(backend)
	for time.Now().Before(deadline) {
		failed = scrapeMetric(t, col, "otelcol_exporter_send_failed_spans")
		tl = load.count(backend)
		if int(failed) >= tl.Lost && tl.Lost > 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("backend answering ResourceExhausted (no RetryInfo): %s; otelcol_exporter_send_failed_spans=%.0f", tl, failed)
	if tl.Lost == 0 {
		t.Fatal("expected the exporter to drop non-retryable ResourceExhausted batches")
	}
	if int(failed) != tl.Lost {
		t.Errorf("lost %d spans but otelcol_exporter_send_failed_spans says %.0f: a silent loss", tl.Lost, failed)
	}
	if !strings.Contains(col.Logs(), "ResourceExhausted") {
		t.Error("the drop is not in the collector's log")
	}
}
