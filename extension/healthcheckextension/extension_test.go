package healthcheckextension

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/pipeline"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/metadata"
)

func probe(t *testing.T, s *started) (int, probeBody) {
	t.Helper()
	code, body := s.get(t, "/")
	var pb probeBody
	require.NoError(t, json.Unmarshal([]byte(body), &pb), body)
	return code, pb
}

func TestProbeTransitions(t *testing.T) {
	_, url := fakeMetrics(t)
	s := start(t, testConfig(url))

	code, pb := probe(t, s)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, probeStarting, pb.Status)

	require.NoError(t, s.Ready())
	code, pb = probe(t, s)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, probeOK, pb.Status)
	assert.WithinDuration(t, time.Now(), pb.Since, 5*time.Second)
	_, err := time.ParseDuration(pb.Uptime)
	require.NoError(t, err, pb.Uptime)

	exp := componentstatus.NewInstanceID(component.MustNewID("otlp_grpc"), component.KindExporter, pipeline.NewID(pipeline.SignalTraces))
	s.Changed(exp, componentstatus.NewEvent(componentstatus.StatusOK))
	s.Changed(exp, componentstatus.NewRecoverableErrorEvent(errors.New("retrying")))
	code, _ = probe(t, s)
	assert.Equal(t, http.StatusOK, code, "a recoverable error does not fail the probe")

	s.Changed(exp, componentstatus.NewPermanentErrorEvent(errors.New("bad config")))
	code, pb = probe(t, s)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, probeComponentError, pb.Status)
	assert.Contains(t, pb.Reason, "exporter:otlp_grpc")

	require.NoError(t, s.NotReady())
	code, pb = probe(t, s)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, probeShuttingDown, pb.Status)
}

func TestFatalErrorFailsProbe(t *testing.T) {
	_, url := fakeMetrics(t)
	s := start(t, testConfig(url))
	require.NoError(t, s.Ready())
	rcv := componentstatus.NewInstanceID(component.MustNewID("otlp"), component.KindReceiver, pipeline.NewID(pipeline.SignalTraces))
	s.Changed(rcv, componentstatus.NewFatalErrorEvent(errors.New("listen tcp :4317: bind: address already in use")))
	code, pb := probe(t, s)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, probeComponentError, pb.Status)
}

// TestShutdownAnswers503BeforeListenerCloses follows the collector's order:
// NotReady, then the pipelines stop, then Shutdown.
func TestShutdownAnswers503BeforeListenerCloses(t *testing.T) {
	_, url := fakeMetrics(t)
	cfg := testConfig(url)
	ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	h := ext.(*healthCheck)
	require.NoError(t, h.Start(context.Background(), componenttest.NewNopHost()))
	s := &started{healthCheck: h, url: "http://" + h.addr.String(), client: &http.Client{Transport: &http.Transport{}}}
	require.NoError(t, h.Ready())
	code, _ := s.get(t, "/")
	require.Equal(t, http.StatusOK, code)

	require.NoError(t, h.NotReady())
	code, body := s.get(t, "/")
	assert.Equal(t, http.StatusServiceUnavailable, code, body)
	assert.Contains(t, body, `"status":"shutting_down"`)
	code, _ = s.get(t, "/status")
	assert.Equal(t, http.StatusServiceUnavailable, code)

	s.client.CloseIdleConnections()
	require.NoError(t, h.Shutdown(context.Background()))
	_, err = net.DialTimeout("tcp", h.addr.String(), time.Second)
	require.Error(t, err, "listener is closed after Shutdown")
	// A second Shutdown (the collector may call it after a failed Start) is harmless.
	require.NoError(t, h.Shutdown(context.Background()))
}

func TestShutdownWithoutStart(t *testing.T) {
	ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), createDefaultConfig())
	require.NoError(t, err)
	require.NoError(t, ext.Shutdown(context.Background()))
}

func TestStartFailsWhenPortIsTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	cfg := createDefaultConfig().(*Config)
	cfg.ServerConfig.NetAddr.Endpoint = ln.Addr().String()
	ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	err = ext.Start(context.Background(), componenttest.NewNopHost())
	require.ErrorContains(t, err, "health_check: listening on endpoint")
	require.NoError(t, ext.Shutdown(context.Background()))
}

func TestStartFailsWhenLogsPortIsTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	cfg := testConfig("http://127.0.0.1:1/metrics")
	cfg.Delivery.LogsEndpoint = ln.Addr().String()
	ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	err = ext.Start(context.Background(), componenttest.NewNopHost())
	require.ErrorContains(t, err, "delivery.logs_endpoint")
	require.NoError(t, ext.Shutdown(context.Background()))
}

func TestResponseBodyIsContribCompatible(t *testing.T) {
	_, url := fakeMetrics(t)
	cfg := testConfig(url)
	cfg.ResponseBody = &ResponseBodyConfig{Healthy: "I'm OK", Unhealthy: "I'm not well"}
	s := start(t, cfg)
	code, body := s.get(t, "/")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "I'm not well", body)
	require.NoError(t, s.Ready())
	code, body = s.get(t, "/")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "I'm OK", body)
}

func TestBadRequests(t *testing.T) {
	_, url := fakeMetrics(t)
	cfg := testConfig(url)
	cfg.Path = "/healthz"
	s := start(t, cfg)
	require.NoError(t, s.Ready())

	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/healthz", http.StatusOK},
		{http.MethodHead, "/healthz", http.StatusOK},
		{http.MethodGet, "/status", http.StatusOK},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/healthz/x", http.StatusNotFound},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/status", http.StatusMethodNotAllowed},
		{http.MethodPut, "/nope", http.StatusNotFound},
	} {
		code, _ := s.do(t, tc.method, tc.path)
		assert.Equal(t, tc.code, code, "%s %s", tc.method, tc.path)
	}
	req, err := http.NewRequest(http.MethodPost, s.url+"/status", http.NoBody)
	require.NoError(t, err)
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
}

func TestServerTimeoutsAreApplied(t *testing.T) {
	_, url := fakeMetrics(t)
	s := start(t, testConfig(url))
	assert.Equal(t, defaultReadHeaderTimeout, s.server.ReadHeaderTimeout)
	assert.Equal(t, defaultReadTimeout, s.server.ReadTimeout)
	assert.Equal(t, defaultWriteTimeout, s.server.WriteTimeout)

	// A client that never finishes its headers is cut off.
	cfg := testConfig(url)
	cfg.ServerConfig.ReadHeaderTimeout = 100 * time.Millisecond
	s = start(t, cfg)
	conn, err := net.Dial("tcp", s.addr.String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n"))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 512)
	_, err = conn.Read(buf)
	// The server closes the connection (EOF) or answers 408; it never hangs.
	var ne net.Error
	if errors.As(err, &ne) {
		assert.False(t, ne.Timeout(), "server kept a slow client open")
	}
}
