package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc/codes"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// health_check's /status with the shipped configs: delivery health from the
// export attempts backend_auth sees (issue 14), at any log level.

// exporterStatus is one entry of /status "exporters".
type exporterStatus struct {
	Status         string `json:"status"`
	Cause          string `json:"cause"`
	Delivering     bool   `json:"delivering"`
	Attempts       int64  `json:"attempts"`
	FailedAttempts int64  `json:"failed_attempts"`
	LastError      string `json:"last_error"`
	ErrorCode      string `json:"error_code"`
	LastErrorAt    string `json:"last_error_at"`
	Observer       string `json:"observer"`
	Sent           int64  `json:"sent"`
	Failed         int64  `json:"failed"`
	FailedEnqueue  int64  `json:"failed_enqueue"`
	Received       int64  `json:"received"`
	QueueSize      int64  `json:"queue_size"`
	QueueCapacity  int64  `json:"queue_capacity"`
}

type statusDoc struct {
	Status    string                    `json:"status"`
	Exporters map[string]exporterStatus `json:"exporters"`
	raw       string
}

// waitStatus polls /status of col every 100 ms until cond holds and returns
// that document. After timeout it fails, naming what it waited for, with the
// last answer and the collector's own metrics.
func waitStatus(t *testing.T, col *harness.Collector, what string, timeout time.Duration, cond func(statusDoc) bool) statusDoc {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	last := ""
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get("http://" + col.HealthEndpoint + "/status")
		if err != nil {
			last = err.Error()
			continue
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = string(raw)
		var doc statusDoc
		if json.Unmarshal(raw, &doc) == nil && cond(doc) {
			doc.raw = last
			return doc
		}
	}
	metrics := ""
	if resp, err := http.Get("http://" + col.MetricsEndpoint + "/metrics"); err == nil {
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = grepLines(string(raw), "otelcol_exporter")
	}
	t.Fatalf("/status: no %s after %s; last:\n%s\nmetrics:\n%s", what, timeout, last, metrics)
	return statusDoc{}
}

// levelOverride sets service::telemetry::logs::level.
func levelOverride(t *testing.T, level string) string {
	return writeConfig(t, "service:\n  telemetry:\n    logs:\n      level: "+level+"\n")
}

// startHealth starts a backend and the shipped config for transport in front
// of it at the given log level, with more config fragments merged over it.
func startHealth(t *testing.T, transport, level string, env map[string]string, overrides ...string) (*harness.Backend, *harness.Collector) {
	t.Helper()
	backend := harness.StartBackend(t)
	e := shippedEnv(backend, transport, t.TempDir())
	for k, v := range env {
		e[k] = v
	}
	col := startShipped(t, transport, e, append([]string{levelOverride(t, level)}, overrides...)...)
	return backend, col
}

// sendSpans sends td every 100ms until the test ends or stop is called.
// Send errors are expected while the collector refuses and are ignored.
func sendSpans(t *testing.T, col *harness.Collector, td ptrace.Traces) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			sendCtx, c := context.WithTimeout(ctx, 2*time.Second)
			_ = harness.SendGRPC(sendCtx, col.GRPCEndpoint, td)
			c()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// spans is a trace of n spans.
func spans(n int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "health-e2e")
	ss := rs.ScopeSpans().AppendEmpty()
	for i := range n {
		sp := ss.Spans().AppendEmpty()
		sp.SetName(fmt.Sprintf("span-%d", i))
		sp.SetTraceID([16]byte{1, byte(i >> 8), byte(i)})
		sp.SetSpanID([8]byte{1, byte(i >> 8), byte(i)})
		sp.SetStartTimestamp(1)
		sp.SetEndTimestamp(2)
	}
	return td
}

func probeCode(t *testing.T, col *harness.Collector) int {
	t.Helper()
	resp, err := http.Get("http://" + col.HealthEndpoint + "/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// firstRequest is the arrival time of the first request after since that
// the backend answered as accepted says.
func firstRequest(b *harness.Backend, since time.Time, accepted bool) time.Time {
	for _, r := range b.Requests() {
		if r.At.After(since) && r.Accepted == accepted {
			return r.At
		}
	}
	return time.Time{}
}

// Healthy flow: the probe answers 200 and /status shows attempts and spans
// delivered, reported by backend_auth.
func TestHealthCheckHealthyFlow(t *testing.T) {
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			exporter := shippedExporter(transport)
			backend, col := startHealth(t, transport, "info", nil)
			sendSpans(t, col, spans(5))
			backend.WaitForSpans(5, 15*time.Second)
			doc := waitStatus(t, col, "spans sent", 15*time.Second, func(d statusDoc) bool {
				return d.Exporters[exporter].Sent > 0 && d.Exporters[exporter].Attempts > 0
			})
			e := doc.Exporters[exporter]
			if !e.Delivering || e.LastError != "" || e.Status != "ok" || doc.Status != "ok" || e.Observer != "backend_auth" {
				t.Errorf("healthy flow: want delivering, no error, status ok, observer backend_auth; got %s", doc.raw)
			}
			if e.QueueCapacity != 512<<20 {
				t.Errorf("queue_capacity = %d, want the shipped 536870912 (512 MiB, sizer bytes)", e.QueueCapacity)
			}
			if code := probeCode(t, col); code != http.StatusOK {
				t.Errorf("GET / = %d, want 200", code)
			}
			if partial := concurrentStatusReads(t, col, 20, 10); partial != 0 {
				t.Errorf("%d of 200 concurrent /status answers lack the propagation report", partial)
			}
		})
	}
}

// concurrentStatusReads reads /status with readers goroutines, n times each,
// and counts the answers without istio_span's "propagation" report: every
// answer must carry every source.
func concurrentStatusReads(t *testing.T, col *harness.Collector, readers, n int) int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	var mu sync.Mutex
	partial := 0
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			for range n {
				resp, err := client.Get("http://" + col.HealthEndpoint + "/status")
				body := ""
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					body = string(b)
				}
				var doc map[string]json.RawMessage
				if json.Unmarshal([]byte(body), &doc) != nil || !strings.HasPrefix(string(doc["propagation"]), "[") {
					mu.Lock()
					partial++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return partial
}

// Backend down and back, with the shipped retry settings: /status shows
// "backend unreachable" within seconds of the first failed attempt, and
// delivering again within seconds of the first successful one; the failure
// stays in last_error for the window. At log level error too, and with
// readiness gating.
func TestHealthCheckBackendDown(t *testing.T) {
	for _, tc := range []struct {
		level  string
		gating bool
	}{{"error", false}, {"info", true}} {
		t.Run(fmt.Sprintf("level=%s,gating=%v", tc.level, tc.gating), func(t *testing.T) {
			t.Parallel()
			const exporter = "otlp_grpc"
			gating := writeConfig(t, fmt.Sprintf("extensions:\n  health_check:\n    readiness:\n      on_delivery_failure: %v\n      window: 5s\n", tc.gating))
			backend, col := startHealth(t, "grpc", tc.level, nil, gating)
			sendSpans(t, col, spans(5))
			waitStatus(t, col, "delivery", 15*time.Second, func(d statusDoc) bool { return d.Exporters[exporter].Sent > 0 })

			backend.Stop()
			down := time.Now()
			doc := waitStatus(t, col, "backend unreachable", 15*time.Second, func(d statusDoc) bool {
				e := d.Exporters[exporter]
				return !e.Delivering && e.LastError == "backend unreachable" && d.Status == "degraded"
			})
			t.Logf("MEASURED down: shown %s after the backend stopped (spans every 100 ms, 200 ms batching)", time.Since(down).Round(10*time.Millisecond))
			if e := doc.Exporters[exporter]; e.ErrorCode != "ConnectionRefused" || e.Status != "degraded" || e.FailedAttempts == 0 || e.LastErrorAt == "" {
				t.Errorf("want error_code ConnectionRefused, exporter degraded, failed_attempts > 0, last_error_at; got %s", doc.raw)
			}
			if tc.gating {
				// 503 once no attempt succeeded for readiness.window (5s here).
				deadline := time.Now().Add(20 * time.Second)
				for probeCode(t, col) != http.StatusServiceUnavailable {
					if time.Now().After(deadline) {
						t.Fatal("GET / with gating stays 200 while the backend is down")
					}
					time.Sleep(100 * time.Millisecond)
				}
				t.Logf("MEASURED gating: 503 %s after the backend stopped (readiness.window 5s)", time.Since(down).Round(10*time.Millisecond))
			} else if code := probeCode(t, col); code != http.StatusOK {
				t.Errorf("GET / without gating while the backend is down = %d, want 200", code)
			}

			if err := backend.Start(); err != nil {
				t.Fatal(err)
			}
			up := time.Now()
			doc = waitStatus(t, col, "delivering again", 60*time.Second, func(d statusDoc) bool { return d.Exporters[exporter].Delivering })
			seen := time.Now()
			if first := firstRequest(backend, up, true); !first.IsZero() {
				t.Logf("MEASURED back: shown %s after the first successful attempt (%s after the backend returned; retry backoff)",
					seen.Sub(first).Round(10*time.Millisecond), first.Sub(up).Round(10*time.Millisecond))
			}
			e := doc.Exporters[exporter]
			if e.LastError != "backend unreachable" || e.Status != "degraded" {
				t.Errorf("after recovery, within the window: want last_error kept and the exporter degraded; got %s", doc.raw)
			}
			if code := probeCode(t, col); code != http.StatusOK {
				t.Errorf("GET / after recovery = %d, want 200", code)
			}
		})
	}
}

// Each failure the backend can answer shows in /status with its class and
// code, at log level error, and the token is in no log line.
func TestHealthCheckErrorClasses(t *testing.T) {
	const tooLarge = "grpc: received message larger than max (5242880 vs. 4194304)"
	for _, tc := range []struct {
		name, transport string
		failure         harness.Failure
		env             map[string]string
		class, code     string
		dropped         bool // permanent: spans counted in failed
		log             string
	}{
		{"grpc-401", "grpc", harness.Failure{GRPCCode: codes.Unauthenticated}, nil, "backend rejected credentials", "Unauthenticated", true, "backend rejected credentials"},
		{"http-401", "http", harness.Failure{HTTPStatus: 401}, nil, "backend rejected credentials", "HTTP 401", true, "backend rejected credentials"},
		{"http-429", "http", harness.Failure{HTTPStatus: 429}, nil, "backend overloaded", "HTTP 429", false, ""},
		{"http-503", "http", harness.Failure{HTTPStatus: 503}, nil, "backend overloaded", "HTTP 503", false, ""},
		{"grpc-unavailable", "grpc", harness.Failure{GRPCCode: codes.Unavailable}, nil, "backend overloaded", "Unavailable", false, ""},
		{"grpc-too-large", "grpc", harness.Failure{GRPCCode: codes.ResourceExhausted, Message: tooLarge}, nil, "backend rejected data", "ResourceExhausted", true, "OTLP_BACKEND_MAX_REQUEST_BYTES"},
		{"http-413", "http", harness.Failure{HTTPStatus: 413}, nil, "backend rejected data", "HTTP 413", true, "OTLP_BACKEND_MAX_REQUEST_BYTES"},
		{"grpc-tls-to-plaintext", "grpc", harness.Failure{}, map[string]string{"OTLP_BACKEND_INSECURE": "false"}, "TLS handshake failed", "TLS", false, ""},
		{"http-tls-to-plaintext", "http", harness.Failure{}, map[string]string{"OTLP_BACKEND_INSECURE": "false"}, "TLS handshake failed", "TLS", false, ""},
		{"grpc-timeout", "grpc", harness.Failure{Delay: 3 * time.Second}, nil, "backend timed out", "DeadlineExceeded", false, ""},
		{"http-timeout", "http", harness.Failure{Delay: 3 * time.Second}, nil, "backend timed out", "DeadlineExceeded", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			exporter := shippedExporter(tc.transport)
			env := tc.env
			backend := harness.StartBackend(t)
			e := shippedEnv(backend, tc.transport, t.TempDir())
			for k, v := range env {
				e[k] = v
			}
			if tc.transport == "http" && e["OTLP_BACKEND_INSECURE"] == "false" {
				e["OTLP_BACKEND_ENDPOINT"] = "https://" + strings.TrimPrefix(backend.HTTPEndpoint(), "http://")
			}
			backend.SetFailure(tc.failure)
			overrides := []string{levelOverride(t, "error")}
			if tc.failure.Delay > 0 {
				// A backend slower than the export's timeout.
				overrides = append(overrides, writeConfig(t, "exporters:\n  "+exporter+":\n    timeout: 500ms\n"))
			}
			col := startShipped(t, tc.transport, e, overrides...)
			start := time.Now()
			sendSpans(t, col, spans(5))
			doc := waitStatus(t, col, tc.class, 20*time.Second, func(d statusDoc) bool {
				x := d.Exporters[exporter]
				return x.LastError == tc.class && !x.Delivering && d.Status == "degraded" && (!tc.dropped || x.Failed > 0)
			})
			from, what := firstRequest(backend, start, false), "the first refused attempt"
			if from.IsZero() {
				from, what = start, "the first span sent"
			}
			t.Logf("MEASURED %s: %q shown %s after %s", tc.name, tc.class, time.Since(from).Round(10*time.Millisecond), what)
			x := doc.Exporters[exporter]
			if x.ErrorCode != tc.code || x.Status != "degraded" || x.FailedAttempts == 0 {
				t.Errorf("want error_code %q, exporter degraded, failed_attempts > 0; got %s", tc.code, doc.raw)
			}
			if tc.log != "" {
				col.WaitForLog(tc.log, 10*time.Second)
			}
			assertNoToken(t, col.Logs(), testToken)
		})
	}
}

// A partial failure: the backend refuses large exports as too large and
// accepts small ones. /status is degraded with the failure and the dropped
// spans while other batches are delivered.
func TestHealthCheckPartialFailure(t *testing.T) {
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			exporter := shippedExporter(transport)
			backend, col := startHealth(t, transport, "error", nil)
			backend.SetFailure(harness.Failure{GRPCCode: codes.ResourceExhausted, HTTPStatus: 413,
				Message: "grpc: received message larger than max (5242880 vs. 4194304)", MinSpans: 300})
			sendSpans(t, col, spans(2))
			time.Sleep(time.Second)
			large := spans(500)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := harness.SendGRPC(ctx, col.GRPCEndpoint, large); err != nil {
				t.Fatal(err)
			}
			sent := time.Now()
			doc := waitStatus(t, col, "partial failure", 20*time.Second, func(d statusDoc) bool {
				x := d.Exporters[exporter]
				return x.Failed >= 500 && x.Sent > 0 && x.LastError == "backend rejected data" && x.Status == "degraded" && d.Status == "degraded"
			})
			t.Logf("MEASURED partial: shown %s after the large request: %s", time.Since(sent).Round(10*time.Millisecond), doc.Exporters[exporter].Cause)
			// Small batches keep being delivered: the latest attempt succeeds
			// again, and the failure stays visible.
			doc = waitStatus(t, col, "delivering with the failure kept", 20*time.Second, func(d statusDoc) bool {
				x := d.Exporters[exporter]
				return x.Delivering && x.LastError == "backend rejected data" && x.Status == "degraded"
			})
			if x := doc.Exporters[exporter]; x.Attempts <= x.FailedAttempts {
				t.Errorf("want successful attempts beside the failed ones: %s", doc.raw)
			}
		})
	}
}

// Issue 13 item 4: a backend that echoes the auth header in its error text
// does not get the token into any log line, over gRPC and HTTP, at every log
// level. The echo itself is logged (so the test would see a leak).
func TestExportTokenNotLoggedWhenEchoed(t *testing.T) {
	for _, transport := range []string{"grpc", "http"} {
		for _, level := range []string{"debug", "info", "warn", "error"} {
			t.Run(transport+"-"+level, func(t *testing.T) {
				t.Parallel()
				backend, col := startHealth(t, transport, level, nil)
				backend.SetFailure(harness.Failure{GRPCCode: codes.InvalidArgument, HTTPStatus: 400, EchoHeader: "authentication"})
				sendSpans(t, col, spans(3))
				waitStatus(t, col, "rejected data", 20*time.Second, func(d statusDoc) bool {
					return d.Exporters[shippedExporter(transport)].LastError == "backend rejected data"
				})
				col.WaitForLog("refused authentication: ", 10*time.Second)
				if got := backend.Requests()[0].Headers["authentication"]; len(got) != 1 || got[0] != testToken {
					t.Fatalf("the backend did not get the token (%q): the test would prove nothing", got)
				}
				col.Stop()
				assertNoToken(t, col.Logs(), testToken)
			})
		}
	}
}

// Shutdown: the probe answers 503 before the listener closes, and the
// collector exits 0 without any logs flush error.
func TestHealthCheckShutdown(t *testing.T) {
	backend, col := startHealth(t, "grpc", "info", nil)
	backend.SetFailure(harness.Failure{Delay: 3 * time.Second})
	stop := sendSpans(t, col, spans(2))
	time.Sleep(time.Second) // let an export reach the backend and wait there
	stop()
	if code := probeCode(t, col); code != http.StatusOK {
		t.Fatalf("GET / before shutdown = %d, want 200", code)
	}
	if err := col.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	var seen []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var step string
		resp, err := client.Get("http://" + col.HealthEndpoint + "/")
		if err != nil {
			step = "closed"
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), `"status":"shutting_down"`) {
				step = "503 shutting_down"
			} else {
				step = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
			}
		}
		if len(seen) == 0 || seen[len(seen)-1] != step {
			seen = append(seen, step)
		}
		if step == "closed" {
			break
		}
	}
	t.Logf("probe answers during shutdown: %q", seen)
	i503 := slices.Index(seen, "503 shutting_down")
	if i503 < 0 || seen[len(seen)-1] != "closed" || i503 > len(seen)-2 {
		t.Fatalf("want 503 shutting_down, then the listener closed; got %q", seen)
	}
	for _, s := range seen[i503+1 : len(seen)-1] {
		t.Errorf("unexpected answer between 503 and close: %q", s)
	}
	if err := col.Wait(30 * time.Second); err != nil {
		var exit interface{ ExitCode() int }
		if errors.As(err, &exit) {
			t.Errorf("collector exited with %d, want 0\n%s", exit.ExitCode(), tail(col.Logs(), 2000))
		} else {
			t.Error(err)
		}
	}
	if strings.Contains(col.Logs(), "failed to shutdown logger") {
		t.Errorf("a logs flush error at shutdown:\n%s", tail(col.Logs(), 2000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// A full sending queue: the backend is slow, the queue small, senders are
// refused. /status is degraded with that cause and the enqueue failures,
// while attempts still succeed.
func TestHealthCheckQueueFull(t *testing.T) {
	small := writeConfig(t, `
exporters:
  otlp_grpc:
    sending_queue:
      sizer: items
      queue_size: 2000
      num_consumers: 1
      batch:
        sizer: items
        min_size: 100
        max_size: 500
`)
	backend, col := startHealth(t, "grpc", "error", nil, small)
	backend.SetFailure(harness.Failure{Delay: 2 * time.Second})
	for range 4 {
		sendSpans(t, col, spans(400))
	}
	doc := waitStatus(t, col, "a full queue", 30*time.Second, func(d statusDoc) bool {
		x := d.Exporters["otlp_grpc"]
		return x.FailedEnqueue > 0 && strings.Contains(x.Cause, "sending queue full") && x.Status == "degraded" && d.Status == "degraded"
	})
	x := doc.Exporters["otlp_grpc"]
	if x.QueueCapacity != 2000 || x.QueueSize < 1000 {
		t.Errorf("want the queue at least half of its 2000 capacity: %s", doc.raw)
	}
	t.Logf("queue full: %s", doc.raw)
}
