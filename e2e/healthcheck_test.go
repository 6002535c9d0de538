package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// healthCheck is a collector with the health_check extension in front of a
// harness backend (testdata/health-check.yaml).
type healthCheck struct {
	backend *harness.Backend
	col     *harness.Collector
	token   string
	client  *http.Client
}

// startHealthCheck starts a backend and a collector exporting to it with
// exporter (otlp_grpc or otlp_http), readiness gating on or off.
func startHealthCheck(t *testing.T, exporter string, gating bool) *healthCheck {
	t.Helper()
	backend := harness.StartBackend(t)
	// A token shaped like a real one, unique per test, to look for in outputs.
	token := fmt.Sprintf("tok_%d_S3cr3tValue", time.Now().UnixNano())
	col := harness.StartCollector(t, harness.CollectorOptions{
		Configs: []string{"testdata/health-check.yaml"},
		Env: map[string]string{
			"BACKEND_GRPC_ENDPOINT": backend.GRPCEndpoint(),
			"BACKEND_HTTP_ENDPOINT": backend.HTTPEndpoint(),
			"BACKEND_TOKEN":         token,
			"EXPORTER":              exporter,
			"GATING":                strconv.FormatBool(gating),
			"LOGS_PORT":             harness.FreePort(t),
		},
	})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return &healthCheck{backend: backend, col: col, token: token, client: client}
}

// get returns the status code and body of GET path on the health endpoint,
// or an error when nothing answers.
func (h *healthCheck) get(path string) (int, string, error) {
	resp, err := h.client.Get("http://" + h.col.HealthEndpoint + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func (h *healthCheck) probe(t *testing.T) int {
	t.Helper()
	code, _, err := h.get("/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	return code
}

// exporterStatus is one entry of /status "exporters".
type exporterStatus struct {
	Delivering    bool   `json:"delivering"`
	Sent          int64  `json:"sent"`
	Failed        int64  `json:"failed"`
	FailedEnqueue int64  `json:"failed_enqueue"`
	Received      int64  `json:"received"`
	QueueSize     int64  `json:"queue_size"`
	QueueCapacity int64  `json:"queue_capacity"`
	LastError     string `json:"last_error"`
	ErrorCode     string `json:"error_code"`
}

type statusDoc struct {
	Status    string                    `json:"status"`
	Exporters map[string]exporterStatus `json:"exporters"`
	raw       string
}

// waitStatus polls /status until cond holds, and fails after timeout with
// the last document.
func (h *healthCheck) waitStatus(t *testing.T, what string, timeout time.Duration, cond func(statusDoc) bool) statusDoc {
	t.Helper()
	return waitStatus(t, h.col, what, timeout, cond)
}

// waitStatus polls /status of col every 250 ms until cond holds and returns
// that document. After timeout it fails, naming what it waited for, with the
// last answer and the collector's own metrics (what /status is built from).
func waitStatus(t *testing.T, col *harness.Collector, what string, timeout time.Duration, cond func(statusDoc) bool) statusDoc {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	last := ""
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
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
		metrics = string(raw)
	}
	t.Fatalf("/status: no %s after %s; last:\n%s\nmetrics:\n%s", what, timeout, last, metrics)
	return statusDoc{}
}

// sendSpans sends a small trace every 100ms until the test ends or stop is
// called. Send errors are expected while the backend is down and ignored.
func (h *healthCheck) sendSpans(t *testing.T) (stop func()) {
	t.Helper()
	td := harness.ReadTraces(t, "testdata/curl-span.json")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			sendCtx, c := context.WithTimeout(ctx, 2*time.Second)
			_ = harness.SendGRPC(sendCtx, h.col.GRPCEndpoint, td)
			c()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// Healthy flow: the probe answers 200 and /status shows spans delivered.
func TestHealthCheckHealthyFlow(t *testing.T) {
	for _, exporter := range []string{"otlp_grpc", "otlp_http"} {
		t.Run(exporter, func(t *testing.T) {
			t.Parallel()
			h := startHealthCheck(t, exporter, true)
			h.sendSpans(t)
			h.backend.WaitForSpans(5, 10*time.Second)
			doc := h.waitStatus(t, "spans sent", 15*time.Second, func(d statusDoc) bool {
				return d.Exporters[exporter].Sent > 0
			})
			e := doc.Exporters[exporter]
			if !e.Delivering || e.LastError != "" || doc.Status != "ok" {
				t.Errorf("healthy flow: want delivering, no error, status ok; got %s", doc.raw)
			}
			if e.QueueCapacity != 1000 {
				t.Errorf("queue_capacity = %d, want the exporter default 1000", e.QueueCapacity)
			}
			if code, body, _ := h.get("/"); code != http.StatusOK || !strings.Contains(body, `"status":"ok"`) {
				t.Errorf("GET / = %d %s, want 200 with status ok", code, body)
			}
		})
	}
}

// Backend down: within the window /status shows the exporter not delivering
// with the error class; the probe stays 200 with gating off and turns 503
// with gating on; both recover once the backend is back.
func TestHealthCheckBackendDown(t *testing.T) {
	for _, gating := range []bool{false, true} {
		t.Run("gating="+strconv.FormatBool(gating), func(t *testing.T) {
			t.Parallel()
			const exporter = "otlp_grpc"
			h := startHealthCheck(t, exporter, gating)
			h.sendSpans(t)
			h.backend.WaitForSpans(3, 10*time.Second)
			h.waitStatus(t, "delivery", 15*time.Second, func(d statusDoc) bool { return d.Exporters[exporter].Sent > 0 })

			h.backend.Stop()
			down := time.Now()
			doc := h.waitStatus(t, "delivery failure with an error class", 30*time.Second, func(d statusDoc) bool {
				e := d.Exporters[exporter]
				return !e.Delivering && e.LastError == "backend unreachable"
			})
			t.Logf("not delivering, class %q (%s), %s after the backend went down", doc.Exporters[exporter].LastError,
				doc.Exporters[exporter].ErrorCode, time.Since(down).Round(100*time.Millisecond))
			if doc.Status != "degraded" {
				t.Errorf("status = %q, want degraded", doc.Status)
			}
			wantProbe := http.StatusOK
			if gating {
				wantProbe = http.StatusServiceUnavailable
			}
			if code := h.probe(t); code != wantProbe {
				t.Errorf("GET / with gating=%v while the backend is down = %d, want %d", gating, code, wantProbe)
			}

			if err := h.backend.Start(); err != nil {
				t.Fatal(err)
			}
			up := time.Now()
			doc = h.waitStatus(t, "recovery", 60*time.Second, func(d statusDoc) bool {
				return d.Exporters[exporter].Delivering
			})
			t.Logf("delivering again %s after the backend came back", time.Since(up).Round(100*time.Millisecond))
			if e := doc.Exporters[exporter]; e.LastError != "" {
				t.Errorf("last_error = %q while delivering, want empty", e.LastError)
			}
			if code := h.probe(t); code != http.StatusOK {
				t.Errorf("GET / after recovery = %d, want 200", code)
			}
		})
	}
}

// Backend rejects the credentials: /status says so, and the token appears
// nowhere in what the extension serves or in the collector's logs.
func TestHealthCheckCredentialsRejected(t *testing.T) {
	for _, exporter := range []string{"otlp_grpc", "otlp_http"} {
		t.Run(exporter, func(t *testing.T) {
			t.Parallel()
			h := startHealthCheck(t, exporter, false)
			h.backend.SetFailure(harness.Failure{GRPCCode: codes.Unauthenticated, HTTPStatus: http.StatusUnauthorized})
			h.sendSpans(t)
			doc := h.waitStatus(t, "credentials rejected", 30*time.Second, func(d statusDoc) bool {
				e := d.Exporters[exporter]
				return !e.Delivering && e.LastError == "backend rejected credentials"
			})
			if e := doc.Exporters[exporter]; e.ErrorCode != "Unauthenticated" {
				t.Errorf("error_code = %q, want Unauthenticated", e.ErrorCode)
			}
			if got := h.backend.Requests(); len(got) == 0 || !strings.Contains(strings.Join(got[0].Headers["authorization"], ""), h.token) {
				t.Fatalf("the backend did not see the token; the test would prove nothing")
			}
			_, probeBody, _ := h.get("/")
			for name, out := range map[string]string{"/status": doc.raw, "/": probeBody, "collector logs": h.col.Logs()} {
				if strings.Contains(out, h.token) {
					t.Errorf("the token appears in %s", name)
				}
			}
		})
	}
}

// Shutdown: the probe answers 503 before the listener closes. The backend
// answers slowly so the exporter drains for a while after NotReady.
func TestHealthCheckShutdown(t *testing.T) {
	h := startHealthCheck(t, "otlp_grpc", false)
	h.backend.SetFailure(harness.Failure{Delay: 3 * time.Second})
	stop := h.sendSpans(t)
	// Let an export reach the backend and wait there.
	time.Sleep(1 * time.Second)
	stop()
	if code := h.probe(t); code != http.StatusOK {
		t.Fatalf("GET / before shutdown = %d, want 200", code)
	}

	if err := h.col.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		code, body, err := h.get("/")
		var step string
		switch {
		case err != nil:
			step = "closed"
		case code == http.StatusServiceUnavailable && strings.Contains(body, `"status":"shutting_down"`):
			step = "503 shutting_down"
		default:
			step = fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
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
	if err := h.col.Wait(30 * time.Second); err != nil {
		var exit interface{ ExitCode() int }
		if errors.As(err, &exit) {
			t.Errorf("collector exited with %d, want 0\n%s", exit.ExitCode(), tail(h.col.Logs(), 2000))
		} else {
			t.Error(err)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
