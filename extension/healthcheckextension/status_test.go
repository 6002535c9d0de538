package healthcheckextension

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/extension/extensioncapabilities"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pipeline"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/errclass"
	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/metadata"
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
	for _, key := range []string{"delivering", "sent", "failed", "failed_enqueue", "received", "queue_size", "queue_capacity", "last_error", "window"} {
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
	assert.Equal(t, false, d["error_log"])
	assert.NotContains(t, d, "error")
}

func TestStatusUnavailableWhileStarting(t *testing.T) {
	_, url := fakeMetrics(t)
	s := start(t, testConfig(url))
	code, body := s.get(t, "/status")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, `"status":"unavailable"`)
}

func TestStatusSources(t *testing.T) {
	_, url := fakeMetrics(t)
	s := start(t, testConfig(url))
	require.NoError(t, s.Ready())

	s.RegisterStatusSource("panics", func() any { panic("boom") })
	s.RegisterStatusSource("not_json", func() any { return make(chan int) })
	release := make(chan struct{})
	s.RegisterStatusSource("slow", func() any { <-release; return "late" })
	s.RegisterStatusSource("status", func() any { return "hijack" })
	s.RegisterStatusSource("", func() any { return 1 })
	unregister := s.RegisterStatusSource("counter", func() any { return 1 })

	begin := time.Now()
	doc := s.status(t)
	assert.Less(t, time.Since(begin), 3*time.Second, "a slow source is bounded")
	assert.Equal(t, map[string]any{"error": "status source panicked"}, doc["panics"])
	assert.Contains(t, doc["not_json"].(map[string]any)["error"], "not JSON")
	assert.Equal(t, map[string]any{"error": "status source did not answer within 1s"}, doc["slow"])
	assert.Equal(t, overallOK, doc["status"], "reserved keys cannot be registered")
	assert.NotContains(t, doc, "")
	assert.InDelta(t, 1, doc["counter"], 0)

	// While the slow call is still running, it is not called again.
	doc = s.status(t)
	assert.Equal(t, map[string]any{"error": "status source is still answering a previous request"}, doc["slow"])
	close(release)
	require.Eventually(t, func() bool { return s.status(t)["slow"] == "late" }, 5*time.Second, 20*time.Millisecond)

	// Replacing a name, then calling the first unregister, keeps the replacement.
	s.RegisterStatusSource("counter", func() any { return 2 })
	unregister()
	unregister()
	assert.InDelta(t, 2, s.status(t)["counter"], 0)
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

// TestDeliveryHealth drives the fake collector metrics through a backend
// outage and recovery.
func TestDeliveryHealth(t *testing.T) {
	fake, url := fakeMetrics(t)
	cfg := testConfig(url)
	cfg.Delivery.LogsEndpoint = "127.0.0.1:0"
	s := start(t, cfg)
	// Close the logs listener at Shutdown so goleak sees no server goroutine;
	// the linger itself is tested in internal/exportlog.
	s.logsLinger = 0
	require.NoError(t, s.Ready())
	traffic := func(delivered bool) func(f *fakeCollector) {
		return func(f *fakeCollector) {
			f.received += 10
			if delivered {
				f.sent += 10
			}
		}
	}
	pump := func(delivered bool, d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			fake.set(traffic(delivered))
		}
	}

	pump(true, 600*time.Millisecond)
	e := s.exporter(t, "otlp_grpc")
	assert.Equal(t, true, e["delivering"])
	assert.Greater(t, e["sent"], float64(0))
	assert.Empty(t, e["last_error"])
	assert.Contains(t, e, "last_delivery")

	// Backend down: spans keep arriving, none are sent.
	pump(false, 900*time.Millisecond)
	e = s.exporter(t, "otlp_grpc")
	assert.Equal(t, false, e["delivering"], e)
	assert.InDelta(t, 0, e["sent"], 0)
	assert.Equal(t, errclass.NoDelivery, e["last_error"], "no error seen yet: the exporter is retrying")
	assert.Equal(t, overallDegraded, s.status(t)["status"])
	code, _ := s.get(t, "/")
	assert.Equal(t, http.StatusOK, code, "gating is off by default")

	// The collector's log pipeline reports the retry error.
	postLog(t, "http://"+s.logsAddr.String()+"/v1/logs",
		`rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 10.0.0.1:4317: connect: connection refused" token=abcd1234efgh5678`)
	fake.set(traffic(false))
	require.Eventually(t, func() bool { return s.exporter(t, "otlp_grpc")["last_error"] == errclass.Unreachable }, 5*time.Second, 50*time.Millisecond)
	_, body := s.get(t, "/status")
	assert.NotContains(t, body, "abcd1234efgh5678")
	assert.NotContains(t, body, "10.0.0.1")
	assert.Contains(t, body, `"error_code":"ConnectionRefused"`)

	// Recovery: the next delivery turns it back.
	fake.set(traffic(true))
	require.Eventually(t, func() bool { return s.exporter(t, "otlp_grpc")["delivering"] == true }, 5*time.Second, 50*time.Millisecond)
	e = s.exporter(t, "otlp_grpc")
	assert.Empty(t, e["last_error"], "last_error is empty while delivering")
}

func TestDeliveryErrorClassFromDetailedMetrics(t *testing.T) {
	fake, url := fakeMetrics(t)
	s := start(t, testConfig(url))
	require.NoError(t, s.Ready())
	for end := time.Now().Add(900 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		fake.set(func(f *fakeCollector) {
			f.received += 10
			if f.failedByType == nil {
				f.failedByType = map[string]float64{}
			}
			f.failedByType["Unauthenticated"] += 10
		})
	}
	e := s.exporter(t, "otlp_grpc")
	assert.Equal(t, false, e["delivering"])
	assert.Equal(t, errclass.Credentials, e["last_error"])
	assert.Equal(t, "Unauthenticated", e["error_code"])
	assert.Greater(t, e["failed"], float64(0))
}

func TestReadinessGating(t *testing.T) {
	fake, url := fakeMetrics(t)
	cfg := testConfig(url)
	cfg.Readiness.OnDeliveryFailure = true
	cfg.Readiness.QueueFill = 0.9
	s := start(t, cfg)
	require.NoError(t, s.Ready())

	require.Eventually(t, func() bool { code, _ := s.get(t, "/"); return code == http.StatusOK }, 5*time.Second, 20*time.Millisecond)

	// Spans arrive, none are delivered: 503 within the window.
	stop := make(chan struct{})
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				fake.set(func(f *fakeCollector) { f.received += 10 })
			}
		}
	}()
	require.Eventually(t, func() bool {
		code, body := s.get(t, "/")
		return code == http.StatusServiceUnavailable && strings.Contains(body, probeNotDelivering)
	}, 5*time.Second, 50*time.Millisecond)
	close(stop)
	<-pumped

	// The next delivery recovers the probe.
	fake.set(func(f *fakeCollector) { f.sent += 10 })
	require.Eventually(t, func() bool { code, _ := s.get(t, "/"); return code == http.StatusOK }, 5*time.Second, 20*time.Millisecond)

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

func postLog(t *testing.T, url, errText string) {
	t.Helper()
	ld := plog.NewLogs()
	sl := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	sl.Scope().Attributes().PutStr("otelcol.component.kind", "exporter")
	sl.Scope().Attributes().PutStr("otelcol.component.id", "otlp_grpc")
	lr := sl.LogRecords().AppendEmpty()
	lr.Body().SetStr("Exporting failed. Will retry the request after interval.")
	lr.Attributes().PutStr("exception.message", errText)
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	require.NoError(t, err)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Post(url, "application/x-protobuf", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
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

// A source stuck forever does not stall Shutdown.
func TestShutdownWithStuckSource(t *testing.T) {
	_, url := fakeMetrics(t)
	cfg := testConfig(url)
	ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	h := ext.(*healthCheck)
	require.NoError(t, h.Start(context.Background(), componenttest.NewNopHost()))
	release := make(chan struct{})
	defer close(release) // let the goroutine end before goleak looks
	h.RegisterStatusSource("stuck", func() any { <-release; return nil })
	s := &started{healthCheck: h, url: "http://" + h.addr.String(), client: &http.Client{Transport: &http.Transport{}}}
	_ = s.status(t)
	s.client.CloseIdleConnections()
	begin := time.Now()
	require.NoError(t, h.Shutdown(context.Background()))
	assert.Less(t, time.Since(begin), 3*time.Second)
}
