package healthcheckextension

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensiontest"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/metadata"
)

// fakeCollector is a real HTTP Prometheus endpoint serving the collector's
// own metrics in the collector's default text format, with figures the test
// controls.
type fakeCollector struct {
	mu            sync.Mutex
	received      float64
	sent          float64
	failed        float64
	failedByType  map[string]float64
	enqueueFailed float64
	queueSize     float64
	queueCapacity float64
}

func (f *fakeCollector) set(fn func(f *fakeCollector)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeCollector) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "# TYPE otelcol_receiver_accepted_spans counter\notelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"} %v\n", f.received)
	fmt.Fprintf(&b, "# TYPE otelcol_exporter_sent_spans counter\notelcol_exporter_sent_spans{exporter=\"otlp_grpc\"} %v\n", f.sent)
	fmt.Fprintf(&b, "# TYPE otelcol_exporter_send_failed_spans counter\n")
	if len(f.failedByType) == 0 {
		fmt.Fprintf(&b, "otelcol_exporter_send_failed_spans{exporter=\"otlp_grpc\"} %v\n", f.failed)
	}
	for typ, n := range f.failedByType {
		fmt.Fprintf(&b, "otelcol_exporter_send_failed_spans{error_permanent=\"true\",error_type=%q,exporter=\"otlp_grpc\"} %v\n", typ, n)
	}
	fmt.Fprintf(&b, "# TYPE otelcol_exporter_enqueue_failed_spans counter\notelcol_exporter_enqueue_failed_spans{exporter=\"otlp_grpc\"} %v\n", f.enqueueFailed)
	fmt.Fprintf(&b, "# TYPE otelcol_exporter_queue_size gauge\notelcol_exporter_queue_size{data_type=\"traces\",exporter=\"otlp_grpc\"} %v\n", f.queueSize)
	fmt.Fprintf(&b, "# TYPE otelcol_exporter_queue_capacity gauge\notelcol_exporter_queue_capacity{data_type=\"traces\",exporter=\"otlp_grpc\"} %v\n", f.queueCapacity)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = io.WriteString(w, b.String())
}

// testConfig listens on a free loopback port and scrapes metricsURL fast.
func testConfig(metricsURL string) *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.ServerConfig.NetAddr.Endpoint = "127.0.0.1:0"
	cfg.Delivery.TelemetryEndpoint = metricsURL
	cfg.Delivery.ScrapeInterval = 100 * time.Millisecond
	cfg.Delivery.Window = 500 * time.Millisecond
	cfg.Readiness.Window = 500 * time.Millisecond
	return cfg
}

// started is a running extension under test.
type started struct {
	*healthCheck
	url    string
	client *http.Client
}

func start(t *testing.T, cfg *Config) *started {
	t.Helper()
	require.NoError(t, cfg.Validate())
	ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	h := ext.(*healthCheck)
	require.NoError(t, h.Start(context.Background(), componenttest.NewNopHost()))
	s := &started{healthCheck: h, url: "http://" + h.addr.String(), client: &http.Client{Transport: &http.Transport{}}}
	t.Cleanup(func() {
		s.client.CloseIdleConnections()
		require.NoError(t, h.Shutdown(context.Background()))
	})
	return s
}

// get returns the status code and body of GET path.
func (s *started) get(t *testing.T, path string) (int, string) {
	t.Helper()
	return s.do(t, http.MethodGet, path)
}

func (s *started) do(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, http.NoBody)
	require.NoError(t, err)
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// status fetches and decodes /status.
func (s *started) status(t *testing.T) map[string]any {
	t.Helper()
	_, body := s.get(t, "/status")
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &doc), body)
	return doc
}

func (s *started) exporter(t *testing.T, id string) map[string]any {
	t.Helper()
	exps, ok := s.status(t)["exporters"].(map[string]any)
	require.True(t, ok)
	e, ok := exps[id].(map[string]any)
	if !ok {
		return nil
	}
	return e
}

func fakeMetrics(t *testing.T) (*fakeCollector, string) {
	t.Helper()
	f := &fakeCollector{queueCapacity: 1000}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL + "/metrics"
}
