package healthcheckextension

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/extension/extensioncapabilities"
	"go.opentelemetry.io/collector/pipeline"
)

// propagationRow has the shape the istio_span processor registers.
type propagationRow struct {
	Service   string `json:"service"`
	Outbound  int    `json:"outbound"`
	Orphans   int    `json:"orphans"`
	Relinked  int    `json:"relinked"`
	Diagnosis string `json:"diagnosis"`
}

func TestStatusShape(t *testing.T) {
	fake, url := fakeMetrics(t)
	fake.set(func(f *fakeCollector) { f.received, f.sent, f.queueSize = 120, 120, 3 })
	s := start(t, testConfig(url))
	require.NoError(t, s.Ready())

	tracesID := pipeline.NewID(pipeline.SignalTraces)
	s.Changed(componentstatus.NewInstanceID(component.MustNewID("otlp"), component.KindReceiver, tracesID),
		componentstatus.NewEvent(componentstatus.StatusOK))
	s.Changed(componentstatus.NewInstanceID(component.MustNewID("otlp_grpc"), component.KindExporter, tracesID),
		componentstatus.NewRecoverableErrorEvent(errors.New("rpc error: authorization: Bearer abc.def.ghi")))
	s.Changed(componentstatus.NewInstanceID(component.MustNewID("health_check"), component.KindExtension),
		componentstatus.NewEvent(componentstatus.StatusOK))

	unregister := s.RegisterStatusSource("propagation", func() any {
		return []propagationRow{{Service: "productpage.default", Outbound: 10, Orphans: 10, Relinked: 10, Diagnosis: "sidecar drops b3"}}
	})
	defer unregister()

	require.Eventually(t, func() bool { return s.scraper.state().ScrapedAt != nil }, 5*time.Second, 20*time.Millisecond)
	code, body := s.get(t, "/status")
	require.Equal(t, http.StatusOK, code)
	doc := s.status(t)

	assert.Equal(t, overallDegraded, doc["status"], "a recoverable error degrades")
	comps := doc["components"].(map[string]any)
	traces := comps["pipelines"].(map[string]any)["traces"].(map[string]any)
	assertComponent(t, traces["receiver:otlp"], "ok", "")
	assertComponent(t, traces["exporter:otlp_grpc"], "recoverable_error", "rpc error: authorization: <redacted> <redacted>")
	assertComponent(t, comps["extensions"].(map[string]any)["health_check"], "ok", "")
	assert.NotContains(t, body, "abc.def.ghi")

	exp := doc["exporters"].(map[string]any)["otlp_grpc"].(map[string]any)
	for _, key := range []string{"status", "delivering", "attempts", "failed_attempts", "sent", "failed", "failed_enqueue", "received", "queue_size", "queue_capacity", "last_error", "window"} {
		assert.Contains(t, exp, key)
	}
	assert.Equal(t, true, exp["delivering"])
	assert.Empty(t, exp["last_error"])
	assert.InDelta(t, 3, exp["queue_size"], 0)
	assert.InDelta(t, 1000, exp["queue_capacity"], 0)
	assert.Equal(t, "500ms", exp["window"])

	assert.Equal(t, []any{map[string]any{
		"service": "productpage.default", "outbound": float64(10), "orphans": float64(10),
		"relinked": float64(10), "diagnosis": "sidecar drops b3",
	}}, doc["propagation"])

	d := doc["delivery"].(map[string]any)
	assert.Equal(t, url, d["source"])
	assert.Equal(t, "500ms", d["window"])
	assert.NotContains(t, d, "error")
}

func TestStatusUnavailableWhileStarting(t *testing.T) {
	_, url := fakeMetrics(t)
	s := start(t, testConfig(url))
	code, body := s.get(t, "/status")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, `"status":"unavailable"`)
}

// "since" is when the overall status began: it stays while the status
// does, and moves when it changes.
func TestStatusSince(t *testing.T) {
	_, url := fakeMetrics(t)
	s := start(t, testConfig(url))
	clock := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	s.mu.Lock()
	s.clock = func() time.Time { return clock }
	s.mu.Unlock()
	since := func() string { return s.status(t)["since"].(string) }

	assert.Equal(t, "unavailable", s.status(t)["status"])
	assert.Equal(t, "2026-11-29T10:00:00Z", since())
	clock = clock.Add(time.Minute)
	assert.Equal(t, "2026-11-29T10:00:00Z", since(), "the same status keeps its since")

	require.NoError(t, s.Ready())
	clock = clock.Add(time.Minute)
	assert.Equal(t, "ok", s.status(t)["status"])
	assert.Equal(t, "2026-11-29T10:02:00Z", since(), "a new status starts a new since")
}

func TestStatusSources(t *testing.T) {
	_, url := fakeMetrics(t)
	s := start(t, testConfig(url))
	require.NoError(t, s.Ready())

	s.RegisterStatusSource("panics", func() any { panic("boom") })
	s.RegisterStatusSource("not_json", func() any { return make(chan int) })
	s.RegisterStatusSource("status", func() any { return "hijack" })
	s.RegisterStatusSource("", func() any { return 1 })
	unregister := s.RegisterStatusSource("counter", func() any { return 1 })

	doc := s.status(t)
	assert.Equal(t, map[string]any{"error": "status source panicked"}, doc["panics"])
	assert.Contains(t, doc["not_json"].(map[string]any)["error"], "not JSON")
	assert.Equal(t, overallOK, doc["status"], "reserved keys cannot be registered")
	assert.NotContains(t, doc, "")
	assert.InDelta(t, 1, doc["counter"], 0)

	// Replacing a name, then calling the first unregister, keeps the replacement.
	s.RegisterStatusSource("counter", func() any { return 2 })
	unregister()
	unregister()
	assert.InDelta(t, 2, s.status(t)["counter"], 0)
}

// Every answer carries every source's report, however many readers ask at
// once (the old registry answered "still answering a previous request").
func TestStatusAnswersAreWhole(t *testing.T) {
	_, url := fakeMetrics(t)
	s := start(t, testConfig(url))
	require.NoError(t, s.Ready())
	s.RegisterStatusSource("propagation", func() any {
		time.Sleep(time.Millisecond) // a snapshot that takes a moment to copy
		return []propagationRow{{Service: "productpage.default"}}
	})
	var wg sync.WaitGroup
	var partial atomic.Int64
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				// No require here: it must not run off the test's goroutine.
				resp, err := s.client.Get(s.url + "/status")
				if err != nil {
					partial.Add(1)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !strings.Contains(string(body), `"service":"productpage.default"`) {
					partial.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, partial.Load(), "answers without the propagation report")
}

func TestStatusSourcesConcurrentRegistration(t *testing.T) {
	_, url := fakeMetrics(t)
	s := start(t, testConfig(url))
	require.NoError(t, s.Ready())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			u := s.RegisterStatusSource("flapping", func() any { return i })
			u()
		}
	}()
	for i := 0; i < 20; i++ {
		code, _ := s.get(t, "/status")
		require.Equal(t, http.StatusOK, code)
	}
	<-done
}

// withExporter tells the extension, as the collector's config snapshot
// would, that exporter otlp_grpc (fed by otlp) reports through backend_auth.
func withExporter(t *testing.T, s *started, url string) {
	t.Helper()
	host, port, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics"), ":")
	conf := confmap.NewFromStringMap(map[string]any{
		"exporters": map[string]any{"otlp_grpc": map[string]any{
			"auth": map[string]any{"authenticator": "backend_auth"}, "middlewares": []any{map[string]any{"id": "backend_auth"}},
		}},
		"service": map[string]any{
			"telemetry": map[string]any{"metrics": map[string]any{"readers": []any{
				map[string]any{"pull": map[string]any{"exporter": map[string]any{"prometheus": map[string]any{"host": host, "port": port}}}},
			}}},
			"pipelines": map[string]any{"traces": map[string]any{"receivers": []any{"otlp"}, "exporters": []any{"otlp_grpc"}}},
		},
	})
	require.NoError(t, s.NotifyConfigSnapshot(t.Context(), extensioncapabilities.NewConfigSnapshot(conf, conf)))
}

var backendAuthID = component.MustNewID("backend_auth")

// TestDeliveryHealth drives an outage and recovery through the attempts
// backend_auth reports: each shows at once, without waiting for a scrape.
func TestDeliveryHealth(t *testing.T) {
	fake, url := fakeMetrics(t)
	cfg := testConfig("")
	cfg.Delivery.Window = time.Minute
	s := start(t, cfg)
	withExporter(t, s, url)
	require.NoError(t, s.Ready())

	s.RecordExportAttempt(backendAuthID, time.Now(), "", "")
	e := s.exporter(t, "otlp_grpc")
	assert.Equal(t, true, e["delivering"])
	assert.Equal(t, "ok", e["status"])
	assert.Equal(t, "backend_auth", e["observer"])
	assert.InDelta(t, 1, e["attempts"], 0)
	assert.Contains(t, e, "last_delivery")

	// Backend down: the first failed attempt shows, with its class and code.
	s.RecordExportAttempt(backendAuthID, time.Now(), "backend unreachable", "ConnectionRefused")
	e = s.exporter(t, "otlp_grpc")
	assert.Equal(t, false, e["delivering"], e)
	assert.Equal(t, "degraded", e["status"])
	assert.Equal(t, causeNotDelivering, e["cause"])
	assert.Equal(t, "backend unreachable", e["last_error"])
	assert.Equal(t, "ConnectionRefused", e["error_code"])
	assert.Contains(t, e, "last_error_at")
	assert.Equal(t, overallDegraded, s.status(t)["status"])
	code, _ := s.get(t, "/")
	assert.Equal(t, http.StatusOK, code, "gating is off by default")

	// Recovery: the next successful attempt turns it back; the failure stays
	// visible (and degrades) for the window.
	s.RecordExportAttempt(backendAuthID, time.Now(), "", "")
	e = s.exporter(t, "otlp_grpc")
	assert.Equal(t, true, e["delivering"])
	assert.Equal(t, "backend unreachable", e["last_error"], "not emptied by a later success")
	assert.InDelta(t, 1, e["failed_attempts"], 0)
	assert.Equal(t, causeAttempts, e["cause"])

	// Spans dropped (permanent errors) degrade too, from the metrics; every
	// cause that holds is named.
	fake.set(func(f *fakeCollector) { f.failed = 1500 })
	require.Eventually(t, func() bool { return s.exporter(t, "otlp_grpc")["failed"] == float64(1500) }, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, causeDropped+"; "+causeAttempts, s.exporter(t, "otlp_grpc")["cause"])
}

// A full queue, and enqueue failures below capacity (the volume is full),
// degrade with their cause.
func TestQueueCauses(t *testing.T) {
	fake, url := fakeMetrics(t)
	s := start(t, testConfig(""))
	withExporter(t, s, url)
	require.NoError(t, s.Ready())
	fake.set(func(f *fakeCollector) { f.queueSize, f.enqueueFailed = 700, 10 })
	require.Eventually(t, func() bool { return s.exporter(t, "otlp_grpc")["cause"] == causeQueueFull }, 5*time.Second, 20*time.Millisecond)
	fake.set(func(f *fakeCollector) { f.queueSize, f.enqueueFailed = 10, 20 })
	require.Eventually(t, func() bool { return s.exporter(t, "otlp_grpc")["cause"] == causeQueueStorage }, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, overallDegraded, s.status(t)["status"])
}

// Without backend_auth on an exporter, delivery falls back to the metrics.
func TestDeliveryWithoutObserver(t *testing.T) {
	fake, url := fakeMetrics(t)
	s := start(t, testConfig(url))
	require.NoError(t, s.Ready())
	for end := time.Now().Add(900 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		fake.set(func(f *fakeCollector) { f.received += 10 })
	}
	e := s.exporter(t, "otlp_grpc")
	assert.Equal(t, false, e["delivering"])
	assert.Equal(t, noDelivery, e["last_error"])
	assert.NotContains(t, e, "observer")
}

func TestReadinessGating(t *testing.T) {
	fake, url := fakeMetrics(t)
	cfg := testConfig(url)
	cfg.Readiness.OnDeliveryFailure = true
	cfg.Readiness.QueueFill = 0.9
	cfg.Delivery.TelemetryEndpoint = ""
	s := start(t, cfg)
	withExporter(t, s, url)
	require.NoError(t, s.Ready())

	require.Eventually(t, func() bool { code, _ := s.get(t, "/"); return code == http.StatusOK }, 5*time.Second, 20*time.Millisecond)

	// Attempts fail and none succeeded within readiness.window: 503.
	s.RecordExportAttempt(backendAuthID, time.Now(), "backend rejected credentials", "Unauthenticated")
	code, body := s.get(t, "/")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, probeNotDelivering)
	assert.Contains(t, body, "backend rejected credentials")

	// The next successful attempt recovers the probe.
	s.RecordExportAttempt(backendAuthID, time.Now(), "", "")
	code, _ = s.get(t, "/")
	assert.Equal(t, http.StatusOK, code)

	// A queue fuller than queue_fill fails the probe.
	fake.set(func(f *fakeCollector) { f.queueSize = 950 })
	require.Eventually(t, func() bool {
		code, body := s.get(t, "/")
		return code == http.StatusServiceUnavailable && strings.Contains(body, probeQueueFull)
	}, 5*time.Second, 20*time.Millisecond)
	fake.set(func(f *fakeCollector) { f.queueSize = 900 })
	require.Eventually(t, func() bool { code, _ := s.get(t, "/"); return code == http.StatusOK }, 5*time.Second, 20*time.Millisecond)
}

func TestUnreadableMetricsAreReportedNotFatal(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1/metrics")
	s := start(t, cfg)
	require.NoError(t, s.Ready())
	require.Eventually(t, func() bool { return s.scraper.state().Error != "" }, 5*time.Second, 20*time.Millisecond)
	doc := s.status(t)
	assert.Equal(t, overallOK, doc["status"])
	assert.Contains(t, doc["delivery"].(map[string]any)["error"], "scraping collector metrics")
	code, _ := s.get(t, "/")
	assert.Equal(t, http.StatusOK, code)
}

func TestConfigSnapshotGivesExportersAndMetricsURL(t *testing.T) {
	fake, url := fakeMetrics(t)
	fake.set(func(f *fakeCollector) { f.received = 5 })
	cfg := testConfig("")
	s := start(t, cfg)
	host, port, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics"), ":")
	conf := confmap.NewFromStringMap(map[string]any{
		"service": map[string]any{
			"telemetry": map[string]any{"metrics": map[string]any{"readers": []any{
				map[string]any{"pull": map[string]any{"exporter": map[string]any{"prometheus": map[string]any{"host": host, "port": port}}}},
			}}},
			"pipelines": map[string]any{
				"traces": map[string]any{"receivers": []any{"otlp"}, "exporters": []any{"otlp_grpc", "otlp_http/backup"}},
			},
		},
	})
	require.NoError(t, s.NotifyConfigSnapshot(t.Context(), extensioncapabilities.NewConfigSnapshot(conf, conf)))
	require.NoError(t, s.Ready())
	require.Eventually(t, func() bool { return s.scraper.state().ScrapedAt != nil }, 5*time.Second, 20*time.Millisecond)
	doc := s.status(t)
	assert.Equal(t, url, doc["delivery"].(map[string]any)["source"])
	exps := doc["exporters"].(map[string]any)
	assert.Contains(t, exps, "otlp_grpc")
	assert.Contains(t, exps, "otlp_http/backup", "configured exporters are listed before they have metrics")
}

func assertComponent(t *testing.T, v any, status, errText string) {
	t.Helper()
	c, ok := v.(map[string]any)
	require.True(t, ok, "component missing: %v", v)
	assert.Equal(t, status, c["status"])
	since, err := time.Parse(time.RFC3339Nano, c["since"].(string))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), since, time.Minute)
	if errText == "" {
		assert.NotContains(t, c, "error")
	} else {
		assert.Equal(t, errText, c["error"])
	}
}
