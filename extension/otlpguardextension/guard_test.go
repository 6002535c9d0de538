package otlpguardextension

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// testGuard is a guard with its telemetry and logs observable.
type testGuard struct {
	*guard
	tel  *componenttest.Telemetry
	logs *observer.ObservedLogs
}

func newTestGuard(t *testing.T, cfg *Config) *testGuard {
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	core, logs := observer.New(zap.InfoLevel)
	set := tel.NewTelemetrySettings()
	set.Logger = zap.New(core)
	g, err := newGuard(cfg, set)
	require.NoError(t, err)
	require.NoError(t, g.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, g.Shutdown(context.Background())) })
	return &testGuard{guard: g, tel: tel, logs: logs}
}

// refusedCount is the refused-requests counter for reason and transport.
func (tg *testGuard) refusedCount(reason, transport string) int64 {
	m, err := tg.tel.GetMetric("otelcol_otlp_guard_requests_refused")
	if err != nil {
		return 0
	}
	var n int64
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		r, _ := dp.Attributes.Value("reason")
		tr, _ := dp.Attributes.Value("transport")
		if r.AsString() == reason && tr.AsString() == transport {
			n += dp.Value
		}
	}
	return n
}

func testConfig() *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.MaxExportRequestBytes = 64 << 10
	return cfg
}

func deepTraces(depth int) ptrace.Traces {
	td := ptrace.NewTraces()
	v := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().Attributes().PutEmpty("v")
	for range depth - 1 {
		v = v.SetEmptyMap().PutEmpty("k")
	}
	v.SetStr("leaf")
	return td
}

func manySpans(n int) ptrace.Traces {
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for range n {
		ss.AppendEmpty()
	}
	return td
}

func bigSpan(bytes int) ptrace.Traces {
	td := manySpans(1)
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().PutStr("payload", strings.Repeat("p", bytes))
	return td
}

// sink is the receiver behind the guard; block holds every request until
// it is closed.
type sink struct {
	ptraceotlp.UnimplementedGRPCServer
	mu    sync.Mutex
	spans int
	block chan struct{}
	in    chan struct{}
}

func (s *sink) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	if s.in != nil {
		s.in <- struct{}{}
	}
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	s.spans += req.Traces().SpanCount()
	s.mu.Unlock()
	return ptraceotlp.NewExportResponse(), nil
}

func startGRPC(t *testing.T, g *guard, s *sink) ptraceotlp.GRPCClient {
	opts, err := g.GetGRPCServerOptions(context.Background())
	require.NoError(t, err)
	srv := grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(1<<20))...)
	ptraceotlp.RegisterGRPCServer(srv, s)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return ptraceotlp.NewGRPCClient(conn)
}

func TestGRPC(t *testing.T) {
	tg := newTestGuard(t, testConfig())
	s := &sink{}
	client := startGRPC(t, tg.guard, s)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		td     ptrace.Traces
		code   codes.Code
		reason string
		says   string
	}{
		{"good", manySpans(3), codes.OK, "", ""},
		{"too deep", deepTraces(33), codes.InvalidArgument, "value_too_deep", "resource_spans[0].scope_spans[0].spans[0].attributes[0].value"},
		{"too many spans", manySpans(defaultMaxSpansPerRequest + 1), codes.ResourceExhausted, "too_many_spans", "16384"},
		{"span too large", bigSpan(70 << 10), codes.ResourceExhausted, "span_too_large", "65536 bytes"},
		{"over receive limit", bigSpan(2 << 20), codes.ResourceExhausted, "request_too_large", "larger than max"},
		{"good after", manySpans(2), codes.OK, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(tc.td))
			assert.Equal(t, tc.code, grpcstatus.Code(err), "%v", err)
			if tc.reason != "" {
				assert.Contains(t, grpcstatus.Convert(err).Message(), tc.says)
				assert.Eventually(t, func() bool { return tg.refusedCount(tc.reason, "grpc") == 1 }, 5*time.Second, 10*time.Millisecond)
			}
		})
	}
	assert.Equal(t, 5, s.spans, "only the good requests reach the receiver")
	assert.Eventually(t, func() bool { return tg.budget.used.Load() == 0 }, 5*time.Second, 10*time.Millisecond, "every reservation released")
	// Logged, never with content.
	for _, e := range tg.logs.All() {
		assert.NotContains(t, e.ContextMap(), "payload")
		for _, f := range e.Context {
			assert.NotContains(t, f.String, "ppp")
		}
	}
	assert.Equal(t, 4, tg.logs.FilterMessage("Refused an OTLP request before decoding it").Len())
}

func TestGRPCInFlightBudget(t *testing.T) {
	cfg := testConfig()
	cfg.MaxInFlightBytes = 10 << 10
	tg := newTestGuard(t, cfg)
	s := &sink{block: make(chan struct{}), in: make(chan struct{}, 1)}
	client := startGRPC(t, tg.guard, s)
	ctx := context.Background()
	first := make(chan error, 1)
	go func() {
		_, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(bigSpan(8<<10)))
		first <- err
	}()
	<-s.in // the first request is admitted and held by the receiver
	_, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(bigSpan(8<<10)))
	assert.Equal(t, codes.Unavailable, grpcstatus.Code(err), "%v", err)
	assert.Equal(t, int64(1), tg.refusedCount("in_flight_limit", "grpc"))
	close(s.block)
	require.NoError(t, <-first)
	assert.Eventually(t, func() bool { return tg.budget.used.Load() == 0 }, 5*time.Second, 10*time.Millisecond)
	s.in = nil
	_, err = client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(bigSpan(8<<10)))
	assert.NoError(t, err, "admitted again once the first was answered")
}

// startHTTP serves the guard in front of an OTLP/HTTP traces handler, inside
// a body limit as confighttp puts it.
func startHTTP(t *testing.T, g *guard, s *sink) string {
	wrap, err := g.GetHTTPHandler(context.Background())
	require.NoError(t, err)
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, readErr := io.ReadAll(r.Body)
		if readErr != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		req := ptraceotlp.NewExportRequest()
		if r.Header.Get("Content-Type") == contentJSON {
			err = req.UnmarshalJSON(body)
		} else {
			err = req.UnmarshalProto(body)
		}
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		_, _ = s.Export(r.Context(), req)
		w.WriteHeader(http.StatusOK)
	})
	h, err := wrap(context.Background(), inner)
	require.NoError(t, err)
	srv := httptest.NewServer(http.MaxBytesHandler(h, 1<<20))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1/traces"
}

func post(t *testing.T, url, contentType string, body []byte) (int, *status.Status) {
	resp, err := http.Post(url, contentType, bytes.NewReader(body))
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, nil
	}
	assert.Equal(t, contentType, resp.Header.Get("Content-Type"))
	st := &status.Status{}
	if contentType == contentJSON {
		require.NoError(t, protojson.Unmarshal(raw, st), "%s", raw)
	} else {
		require.NoError(t, proto.Unmarshal(raw, st))
	}
	return resp.StatusCode, st
}

func TestHTTP(t *testing.T) {
	tg := newTestGuard(t, testConfig())
	s := &sink{}
	url := startHTTP(t, tg.guard, s)
	for _, enc := range []string{contentProto, contentJSON} {
		marshal := func(td ptrace.Traces) []byte {
			req := ptraceotlp.NewExportRequestFromTraces(td)
			var b []byte
			var err error
			if enc == contentJSON {
				b, err = req.MarshalJSON()
			} else {
				b, err = req.MarshalProto()
			}
			require.NoError(t, err)
			return b
		}
		for _, tc := range []struct {
			name   string
			body   []byte
			want   int
			reason string
			says   string
		}{
			{"good", marshal(manySpans(3)), 200, "", ""},
			{"too deep", marshal(deepTraces(33)), 400, "value_too_deep", "attributes[0].value"},
			{"too many spans", marshal(manySpans(defaultMaxSpansPerRequest + 1)), 413, "too_many_spans", "16384"},
			{"span too large", marshal(bigSpan(70 << 10)), 413, "span_too_large", "65536 bytes"},
			{"over body limit", marshal(bigSpan(2 << 20)), 413, "request_too_large", "1048576 bytes"},
			{"malformed", []byte("{{{"), 400, "malformed", "malformed"},
		} {
			t.Run(enc+"/"+tc.name, func(t *testing.T) {
				before := tg.refusedCount(tc.reason, "http")
				if enc == contentProto && tc.name == "malformed" {
					tc.body = []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}
				}
				code, st := post(t, url, enc, tc.body)
				assert.Equal(t, tc.want, code)
				if tc.reason != "" {
					require.NotNil(t, st)
					assert.Contains(t, st.Message, tc.says)
					assert.Equal(t, before+1, tg.refusedCount(tc.reason, "http"))
				}
			})
		}
	}
	assert.Equal(t, 6, s.spans)
	assert.Equal(t, int64(0), tg.budget.used.Load())
}

func TestHTTPInFlightBudget(t *testing.T) {
	cfg := testConfig()
	cfg.MaxInFlightBytes = 10 << 10
	tg := newTestGuard(t, cfg)
	s := &sink{block: make(chan struct{}), in: make(chan struct{}, 1)}
	url := startHTTP(t, tg.guard, s)
	body, err := ptraceotlp.NewExportRequestFromTraces(bigSpan(8 << 10)).MarshalProto()
	require.NoError(t, err)
	first := make(chan int, 1)
	go func() {
		// No require here: it must not run off the test's goroutine.
		resp, postErr := http.Post(url, contentProto, bytes.NewReader(body))
		if postErr != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-s.in
	resp, err := http.Post(url, contentProto, bytes.NewReader(body))
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	close(s.block)
	assert.Equal(t, 200, <-first)
	assert.Equal(t, int64(0), tg.budget.used.Load())
	assert.Equal(t, int64(1), tg.refusedCount("in_flight_limit", "http"))
}

func TestLogRateLimited(t *testing.T) {
	tg := newTestGuard(t, testConfig())
	now := time.Unix(0, 0)
	tg.nowFunc = func() time.Time { return now }
	for range 5 {
		tg.refused(context.Background(), refusal{transport: "http", reason: "value_too_deep", client: "10.0.0.1:5"})
	}
	now = now.Add(logInterval)
	tg.refused(context.Background(), refusal{transport: "http", reason: "value_too_deep", client: "10.0.0.1:5"})
	entries := tg.logs.All()
	require.Len(t, entries, 2)
	assert.Equal(t, int64(4), entries[1].ContextMap()["suppressed"])
	assert.Equal(t, "10.0.0.1:5", entries[0].ContextMap()["client"])
	assert.Equal(t, int64(6), tg.refusedCount("value_too_deep", "http"))
}

func TestBudgetReserveForSmallRequests(t *testing.T) {
	var used int64
	b := &budget{limit: 64 << 20, onChange: func(d int64) { used += d }}
	require.True(t, b.acquire(40<<20), "alone, always")
	require.True(t, b.acquire(20<<20))
	assert.False(t, b.acquire(5<<20), "a large request over the limit")
	for range 12 { // up to 64 + 8 MiB
		assert.True(t, b.acquire(1<<20), "small requests use the reserve")
	}
	assert.False(t, b.acquire(1<<20), "the reserve is an eighth of the limit")
	b.release(60 << 20)
	assert.True(t, b.acquire(5<<20))
	assert.Equal(t, int64(17<<20), used)
}
