package backendauthextension

import (
	"context"
	"crypto/tls"
	"fmt"
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
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

type attempt struct {
	observer    component.ID
	class, code string
}

// recordingHost is a host with one AttemptRecorder extension that also
// receives backend_auth's componentstatus events.
type recordingHost struct {
	mu       sync.Mutex
	attempts []attempt
	events   []*componentstatus.Event
}

func (h *recordingHost) GetExtensions() map[component.ID]component.Component {
	return map[component.ID]component.Component{component.MustNewID("health_check"): h}
}
func (h *recordingHost) Start(context.Context, component.Host) error { return nil }
func (h *recordingHost) Shutdown(context.Context) error              { return nil }

func (h *recordingHost) RecordExportAttempt(id component.ID, _ time.Time, class, code string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts = append(h.attempts, attempt{id, class, code})
}

func (h *recordingHost) Report(ev *componentstatus.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, ev)
}

func (h *recordingHost) last() (attempt, *componentstatus.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var a attempt
	var ev *componentstatus.Event
	if len(h.attempts) > 0 {
		a = h.attempts[len(h.attempts)-1]
	}
	if len(h.events) > 0 {
		ev = h.events[len(h.events)-1]
	}
	return a, ev
}

func startRecorded(t *testing.T, cfg *Config) (*backendAuth, *recordingHost, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	set := extensiontest.NewNopSettings(componentType)
	set.ID = component.MustNewIDWithName("backend_auth", "grpc")
	set.Logger = zap.New(core)
	ext, err := NewFactory().Create(context.Background(), set, cfg)
	require.NoError(t, err)
	host := &recordingHost{}
	require.NoError(t, ext.Start(context.Background(), host))
	t.Cleanup(func() {
		require.NoError(t, ext.Shutdown(context.Background()))
		for _, e := range logs.All() {
			assert.NotContains(t, e.Message, testToken)
			assert.NotContains(t, e.ContextMap(), testToken)
		}
	})
	return ext.(*backendAuth), host, logs
}

// Each gRPC outcome is classified from its code (or, with no connection,
// as a transport failure), recorded under backend_auth's id, and published
// as a recoverable error; a success turns it OK again.
func TestGRPCAttemptsClassified(t *testing.T) {
	b := startGRPCBackend(t)
	a, host, logs := startRecorded(t, &Config{Endpoint: b.addr, Token: testToken, Insecure: true})
	c, err := dialGRPC(t, a, b.addr)
	require.NoError(t, err)
	for _, tc := range []struct {
		code        codes.Code
		class, want string
	}{
		{codes.Unauthenticated, ClassCredentials, "Unauthenticated"},
		{codes.PermissionDenied, ClassCredentials, "PermissionDenied"},
		{codes.ResourceExhausted, ClassOverloaded, "ResourceExhausted"},
		{codes.Unavailable, ClassOverloaded, "Unavailable"},
		{codes.InvalidArgument, ClassRejectedData, "InvalidArgument"},
		{codes.DeadlineExceeded, ClassTimeout, "DeadlineExceeded"},
		{codes.Internal, ClassServerError, "Internal"},
	} {
		b.setCode(tc.code)
		require.Error(t, check(c))
		got, ev := host.last()
		assert.Equal(t, attempt{a.observer.id, tc.class, tc.want}, got)
		require.NotNil(t, ev)
		assert.Equal(t, componentstatus.StatusRecoverableError, ev.Status())
		assert.Equal(t, tc.class+" ("+tc.want+")", ev.Err().Error())
		// The backend's message echoes the request metadata, token included.
		assert.NotContains(t, check(c).Error(), testToken)
		assert.Contains(t, check(c).Error(), "<redacted>")
	}
	b.setCode(codes.OK)
	require.NoError(t, check(c))
	got, ev := host.last()
	assert.Equal(t, attempt{a.observer.id, "", ""}, got)
	assert.Equal(t, componentstatus.StatusOK, ev.Status())
	assert.Equal(t, 1, logs.FilterMessageSnippet("backend rejected credentials").Len())
}

// An export the backend refuses for its size is "rejected data", and the log
// names the variable to lower.
func TestGRPCTooLarge(t *testing.T) {
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64))
	healthpb.RegisterHealthServer(srv, healthServer{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	a, host, logs := startRecorded(t, &Config{Endpoint: l.Addr().String(), Token: testToken, Insecure: true})
	c, err := dialGRPC(t, a, l.Addr().String())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Check(ctx, &healthpb.HealthCheckRequest{Service: strings.Repeat("x", 1000)})
	require.Equal(t, codes.ResourceExhausted, status.Code(err), err)
	got, _ := host.last()
	assert.Equal(t, ClassRejectedData, got.class)
	assert.Equal(t, "ResourceExhausted", got.code)
	assert.Equal(t, 1, logs.FilterMessageSnippet("OTLP_BACKEND_MAX_REQUEST_BYTES").Len())
}

type healthServer struct {
	healthpb.UnimplementedHealthServer
}

// No backend at all, and TLS to a plaintext backend: transport failures.
func TestGRPCTransportFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	a, host, _ := startRecorded(t, &Config{Endpoint: closed, Token: testToken, Insecure: true})
	c, err := dialGRPC(t, a, closed)
	require.NoError(t, err)
	require.Error(t, check(c))
	got, _ := host.last()
	assert.Equal(t, attempt{a.observer.id, ClassUnreachable, "ConnectionRefused"}, got)

	plain := startGRPCBackend(t)
	creds, err := a.PerRPCCredentials()
	require.NoError(t, err)
	mw, err := a.GetGRPCClientOptions(context.Background())
	require.NoError(t, err)
	conn, err := grpc.NewClient(plain.addr, append(mw,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})),
		grpc.WithPerRPCCredentials(creds))...)
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	require.Error(t, check(healthpb.NewHealthClient(conn)))
	got, _ = host.last()
	assert.Equal(t, attempt{a.observer.id, ClassTLS, "TLS"}, got)
}

// echoHandler answers with status and an OTLP Status body whose message
// echoes the auth header, as some backends do.
func echoHandler(code int, header string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := proto.Marshal(&spb.Status{Code: 16, Message: "bad credential " + r.Header.Get(header)})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(code)
		_, _ = w.Write(body)
	})
}

func TestHTTPAttemptsClassifiedAndCleaned(t *testing.T) {
	var code int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		c := code
		mu.Unlock()
		echoHandler(c, "Authorization").ServeHTTP(w, r)
	}))
	defer srv.Close()
	a, host, logs := startRecorded(t, &Config{Endpoint: srv.URL, Header: "Authorization", Scheme: "Bearer", Token: testToken, Insecure: true})
	rt, err := a.RoundTripper(http.DefaultTransport)
	require.NoError(t, err)
	for _, tc := range []struct {
		status int
		class  string
	}{
		{401, ClassCredentials}, {403, ClassCredentials}, {429, ClassOverloaded}, {503, ClassOverloaded},
		{413, ClassRejectedData}, {400, ClassRejectedData}, {502, ClassUnreachable}, {504, ClassTimeout},
		{500, ClassServerError}, {200, ""},
	} {
		mu.Lock()
		code = tc.status
		mu.Unlock()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/traces", http.NoBody)
		require.NoError(t, err)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.NotContains(t, string(body), testToken)
		var st spb.Status
		require.NoError(t, proto.Unmarshal(body, &st), "the cleaned body is still a Status")
		assert.Equal(t, "bad credential ******"+strings.Repeat("*", len(testToken)+1), st.Message)
		got, ev := host.last()
		wantCode := ""
		if tc.class != "" {
			wantCode = fmt.Sprintf("HTTP %d", tc.status)
		}
		assert.Equal(t, attempt{a.observer.id, tc.class, wantCode}, got, tc.status)
		if tc.class == "" {
			assert.Equal(t, componentstatus.StatusOK, ev.Status())
		} else {
			assert.Equal(t, componentstatus.StatusRecoverableError, ev.Status())
		}
	}
	assert.Equal(t, 1, logs.FilterMessageSnippet("OTLP_BACKEND_MAX_REQUEST_BYTES").Len())
	assert.Equal(t, 1, logs.FilterMessageSnippet("backend rejected credentials").Len())
}

func TestHTTPTransportFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + l.Addr().String()
	require.NoError(t, l.Close())
	a, host, _ := startRecorded(t, &Config{Endpoint: closed, Token: testToken, Insecure: true})
	rt, err := a.RoundTripper(http.DefaultTransport)
	require.NoError(t, err)
	_, err = get(t, rt, closed+"/v1/traces")
	require.Error(t, err)
	got, _ := host.last()
	assert.Equal(t, attempt{a.observer.id, ClassUnreachable, "ConnectionRefused"}, got)

	plain := httptest.NewServer(&httpBackend{})
	defer plain.Close()
	tlsURL := "https://" + strings.TrimPrefix(plain.URL, "http://")
	_, err = get(t, rt, tlsURL+"/v1/traces")
	require.Error(t, err)
	got, _ = host.last()
	assert.Equal(t, attempt{a.observer.id, ClassTLS, "TLS"}, got)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tlsURL, http.NoBody)
	n := len(host.attempts)
	_, err = rt.RoundTrip(req)
	require.Error(t, err)
	assert.Len(t, host.attempts, n, "a cancelled attempt is the exporter's doing, not an outcome")
}
