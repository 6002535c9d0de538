package exportlog

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/contrib/bridges/otelzap"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/errclass"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestCollectorLogPath sends a log the way the collector does: a zap logger
// whose otelzap core carries the component attributes as scope attributes
// (service/telemetry/otelconftelemetry/logger_tee.go), an SDK LoggerProvider
// with a batch processor, and the OTLP/HTTP log exporter.
func TestCollectorLogPath(t *testing.T) {
	store := NewStore()
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()

	ctx := context.Background()
	exp, err := otlploghttp.New(ctx, otlploghttp.WithEndpointURL(srv.URL+"/v1/logs"))
	require.NoError(t, err)
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
	core := otelzap.NewCore("go.opentelemetry.io/collector/service",
		otelzap.WithLoggerProvider(lp),
		otelzap.WithAttributes(
			attribute.String("otelcol.component.kind", "exporter"),
			attribute.String("otelcol.component.id", "otlp_grpc"),
			attribute.String("otelcol.signal", "traces"),
		))
	logger := zap.New(core)

	const token = "Bearer abcdef0123456789abcdef"
	logger.Info("Exporting failed. Will retry the request after interval.",
		zap.Error(status.Error(codes.Unauthenticated, "invalid credentials "+token)),
		zap.String("interval", "5s"))
	// Records from receivers or without an error are ignored.
	zap.New(otelzap.NewCore("s", otelzap.WithLoggerProvider(lp), otelzap.WithAttributes(
		attribute.String("otelcol.component.kind", "receiver"),
		attribute.String("otelcol.component.id", "otlp")))).Error("boom", zap.Error(errors.New("connection refused")))
	logger.Info("Starting exporter")

	require.NoError(t, lp.ForceFlush(ctx))
	require.NoError(t, lp.Shutdown(ctx))

	e, ok := store.Last("otlp_grpc")
	require.True(t, ok)
	assert.Equal(t, errclass.Credentials, e.Class)
	assert.Equal(t, "Unauthenticated", e.Code)
	_, ok = store.Last("otlp")
	assert.False(t, ok)
}

func exportRequest(kind, id, errText string) plog.Logs {
	ld := plog.NewLogs()
	sl := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	sl.Scope().Attributes().PutStr("otelcol.component.kind", kind)
	sl.Scope().Attributes().PutStr("otelcol.component.id", id)
	lr := sl.LogRecords().AppendEmpty()
	lr.Body().SetStr("Exporting failed. Will retry the request after interval.")
	lr.Attributes().PutStr("exception.message", errText)
	return ld
}

func TestHandlerEncodings(t *testing.T) {
	store := NewStore()
	h := store.Handler()
	req := plogotlp.NewExportRequestFromLogs(exportRequest("exporter", "otlp_http", "dial tcp 127.0.0.1:4318: connect: connection refused"))

	pb, err := req.MarshalProto()
	require.NoError(t, err)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(pb)
	require.NoError(t, zw.Close())
	r := httptest.NewRequest(http.MethodPost, "/v1/logs", &gz)
	r.Header.Set("Content-Type", "application/x-protobuf")
	r.Header.Set("Content-Encoding", "gzip")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	e, ok := store.Last("otlp_http")
	require.True(t, ok)
	assert.Equal(t, errclass.Unreachable, e.Class)

	js, err := plogotlp.NewExportRequestFromLogs(exportRequest("exporter", "otlp_http", "HTTP Status Code 429")).MarshalJSON()
	require.NoError(t, err)
	r = httptest.NewRequest(http.MethodPost, "/v1/logs", bytes.NewReader(js))
	r.Header.Set("Content-Type", "application/json")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
	e, _ = store.Last("otlp_http")
	assert.Equal(t, errclass.Overloaded, e.Class)

	for _, tc := range []struct {
		method, ctype, body string
		code                int
	}{
		{http.MethodPost, "application/x-protobuf", "\xff\xff\xff", http.StatusBadRequest},
		{http.MethodGet, "", "", http.StatusMethodNotAllowed},
	} {
		r = httptest.NewRequest(tc.method, "/v1/logs", bytes.NewBufferString(tc.body))
		r.Header.Set("Content-Type", tc.ctype)
		w = httptest.NewRecorder()
		h.ServeHTTP(w, r)
		assert.Equal(t, tc.code, w.Code)
	}
}

func TestLaterErrorWins(t *testing.T) {
	store := NewStore()
	now := time.Unix(100, 0)
	store.now = func() time.Time { return now }
	store.Consume(exportRequest("exporter", "otlp_grpc", "code = Unauthenticated"))
	now = now.Add(time.Second)
	store.Consume(exportRequest("exporter", "otlp_grpc", "connection refused"))
	e, _ := store.Last("otlp_grpc")
	assert.Equal(t, errclass.Unreachable, e.Class)
	assert.Equal(t, now, e.At)
}
