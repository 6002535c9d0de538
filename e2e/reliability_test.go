package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

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

// shippedExporter is the exporter id in the shipped config for transport.
func shippedExporter(transport string) string {
	if transport == "http" {
		return "otlp_http"
	}
	return "otlp_grpc"
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
      # The shipped queue is sized in bytes; this test counts in spans.
      sizer: items
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
			exporter := shippedExporter(tc.transport)
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
			// An OTLP/HTTP sender is told the same, with 503 (or 429).
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := harness.PostHTTP(ctx, "http://"+col.HTTPEndpoint, "application/x-protobuf",
				protoBody(t, oneSpan("while-full")), nil)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != http.StatusServiceUnavailable && resp.Status != http.StatusTooManyRequests {
				t.Errorf("OTLP/HTTP sender got %d while the queue is full, want 503 or 429", resp.Status)
			}
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

// The memory limiter, first in the pipeline, refuses spans with a retryable
// status when large requests arrive faster than the backend takes them.
// Its limit is on the Go heap, checked after a request is decoded; with
// GOMEMLIMIT set under it (as the Deployment should), the process's
// anonymous memory stays within twice the limit under this spiky load
// (without GOMEMLIMIT it measured 275 MiB for a 96 MiB limit). File-backed
// RSS (the queue's memory-mapped file) is reported, not bounded: it is page
// cache the kernel can reclaim.
func TestMemoryLimiterRefusesUnderPressure(t *testing.T) {
	const (
		limitMiB = 96
		senders  = 8
		// Requests being received and decoded, exports being compressed and
		// the runtime's own overhead sit outside the heap limit.
		boundMiB = 2 * limitMiB
	)
	backend := harness.StartBackend(t)
	backend.SetFailure(harness.Failure{Delay: 2 * time.Second})
	env := shippedEnv(backend, "grpc", t.TempDir())
	env["GOMEMLIMIT"] = fmt.Sprintf("%dMiB", limitMiB*8/10)
	override := writeConfig(t, fmt.Sprintf(`
processors:
  memory_limiter:
    check_interval: 100ms
    limit_percentage: 0
    spike_limit_percentage: 0
    limit_mib: %d
    spike_limit_mib: 24
`, limitMiB))
	col := startShipped(t, "grpc", env, override)
	pid := col.PID()

	// 3.5 MiB requests (1 000 spans of 3.5 KiB), from 8 senders at once.
	big := oneSpan("pressure")
	spans := big.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	for i := range 999 {
		s := spans.AppendEmpty()
		spans.At(0).CopyTo(s)
		s.SetSpanID([8]byte{byte(i), byte(i >> 8), 9})
	}
	for i := 0; i < spans.Len(); i++ {
		spans.At(i).Attributes().PutStr("payload", strings.Repeat("p", 3500))
	}
	req := ptraceotlp.NewExportRequestFromTraces(big)
	conn, err := grpc.NewClient(col.GRPCEndpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	var mu sync.Mutex
	got := map[codes.Code]int{}
	stop := time.Now().Add(soakOr(10*time.Second, 60*time.Second))
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := client.Export(ctx, req)
				cancel()
				mu.Lock()
				got[status.Code(err)]++
				mu.Unlock()
			}
		})
	}
	maxAnon, maxFile := 0, 0
	for time.Now().Before(stop) {
		anon, file := procRSS(pid)
		maxAnon, maxFile = max(maxAnon, anon), max(maxFile, file)
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	refused := scrapeMetric(t, col, "otelcol_processor_memory_limiter_refused_spans")
	t.Logf("%d senders of 3.5 MiB requests, backend 2 s slow: answers %v; memory_limiter refused %.0f spans; "+
		"max RssAnon %d MiB (limit %d MiB, bound %d MiB), max RssFile %d MiB (queue file)",
		senders, got, refused, maxAnon>>20, limitMiB, boundMiB, maxFile>>20)
	for code := range got {
		if code != codes.OK && code != codes.Unavailable {
			t.Errorf("sender got %v, want OK or retryable Unavailable", code)
		}
	}
	if got[codes.Unavailable] == 0 || refused == 0 {
		t.Error("the memory limiter never refused")
	}
	if maxAnon == 0 {
		t.Error("no RSS read from /proc")
	} else if maxAnon>>20 >= boundMiB {
		t.Errorf("anonymous RSS reached %d MiB, over %d MiB (twice the %d MiB limit)", maxAnon>>20, boundMiB, limitMiB)
	}
	if col.Exited() {
		t.Fatal("collector died under memory pressure")
	}
}

// procRSS is the process's anonymous and file-backed resident memory, in
// bytes, from /proc/<pid>/status (0, 0 when it cannot be read).
func procRSS(pid int) (anon, file int) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "RssAnon:":
			anon = kb << 10
		case "RssFile:":
			file = kb << 10
		}
	}
	return anon, file
}
