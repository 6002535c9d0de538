package backendauthextension

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const testToken = "tok-9f8e7d6c5b4a"

// start creates and starts backend_auth with cfg and returns it with every
// log line it wrote, at every level.
func start(t *testing.T, cfg *Config) (*backendAuth, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	set := extensiontest.NewNopSettings(componentType)
	set.Logger = zap.New(core)
	ext, err := NewFactory().Create(context.Background(), set, cfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() {
		require.NoError(t, ext.Shutdown(context.Background()))
		for _, e := range logs.All() {
			assert.NotContains(t, e.Message, testToken)
			assert.NotContains(t, fmt.Sprint(e.ContextMap()), testToken)
		}
	})
	return ext.(*backendAuth), logs
}

// grpcBackend is a real gRPC server that records the metadata of each call
// and answers with the code it is set to.
type grpcBackend struct {
	addr string
	mu   sync.Mutex
	md   []metadata.MD
	code codes.Code
}

func startGRPCBackend(t *testing.T) *grpcBackend {
	t.Helper()
	b := &grpcBackend{}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		b.mu.Lock()
		b.md = append(b.md, md)
		code := b.code
		b.mu.Unlock()
		if code != codes.OK {
			return nil, status.Error(code, "rejected "+md.String())
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	b.addr = l.Addr().String()
	return b
}

func (b *grpcBackend) setCode(c codes.Code) { b.mu.Lock(); b.code = c; b.mu.Unlock() }

func (b *grpcBackend) last(key string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.md[len(b.md)-1].Get(key)
}

func dialGRPC(t *testing.T, a *backendAuth, addr string) (healthpb.HealthClient, error) {
	t.Helper()
	creds, err := a.PerRPCCredentials()
	require.NoError(t, err)
	mw, err := a.GetGRPCClientOptions(context.Background())
	require.NoError(t, err)
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(creds)}, mw...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn), nil
}

func check(c healthpb.HealthClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestGRPCPlaintextOptIn(t *testing.T) {
	b := startGRPCBackend(t)
	a, logs := start(t, &Config{Endpoint: b.addr, Token: testToken, Insecure: true})
	c, err := dialGRPC(t, a, b.addr)
	require.NoError(t, err)
	require.NoError(t, check(c))
	assert.Equal(t, []string{testToken}, b.last("authentication"), "default header, raw token, no scheme")
	assert.Equal(t, 1, logs.FilterMessageSnippet("OTLP_BACKEND_INSECURE=true").FilterLevelExact(zapcore.WarnLevel).Len(),
		"plaintext is announced once at start")
}

// Without the opt-in, gRPC refuses to put the token on a plaintext
// connection at all: nothing reaches the server.
func TestGRPCPlaintextRefusedByDefault(t *testing.T) {
	b := startGRPCBackend(t)
	a, logs := start(t, &Config{Endpoint: b.addr, Header: "Authentication", Token: testToken})
	c, err := dialGRPC(t, a, b.addr)
	if err == nil {
		err = check(c)
	}
	require.ErrorContains(t, err, "require transport level security")
	b.mu.Lock()
	assert.Empty(t, b.md)
	b.mu.Unlock()
	assert.Zero(t, logs.FilterMessageSnippet("OTLP_BACKEND_INSECURE").Len())
}

func TestGRPCRejectedCredentialsLoggedOnce(t *testing.T) {
	b := startGRPCBackend(t)
	a, logs := start(t, &Config{Endpoint: b.addr, Header: "X-Api-Key", Scheme: "Bearer", Token: testToken, Insecure: true})
	c, err := dialGRPC(t, a, b.addr)
	require.NoError(t, err)
	for _, code := range []codes.Code{codes.Unauthenticated, codes.PermissionDenied} {
		b.setCode(code)
		for range 3 {
			assert.Equal(t, code, status.Code(check(c)))
		}
		assert.Equal(t, 1, logs.FilterMessageSnippet("backend rejected credentials").Len(), "logged once, not per export")
		b.setCode(codes.OK)
		require.NoError(t, check(c))
		assert.Equal(t, 1, logs.FilterMessageSnippet("accepts credentials again").Len())
		logs.TakeAll()
	}
	assert.Equal(t, []string{"Bearer " + testToken}, b.last("x-api-key"))
	b.setCode(codes.Unavailable)
	require.Error(t, check(c))
	assert.Zero(t, logs.FilterMessageSnippet("rejected").Len(), "an outage is not a credentials problem")
}

type httpBackend struct {
	mu      sync.Mutex
	headers []http.Header
	status  int
}

func (h *httpBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.headers = append(h.headers, r.Header.Clone())
	st := h.status
	h.mu.Unlock()
	if st == 0 {
		st = http.StatusOK
	}
	w.WriteHeader(st)
}

func (h *httpBackend) last() http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.headers[len(h.headers)-1]
}

func get(t *testing.T, rt http.RoundTripper, url string) (int, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, http.NoBody)
	require.NoError(t, err)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestHTTPOverTLS(t *testing.T) {
	h := &httpBackend{}
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	a, logs := start(t, &Config{Endpoint: srv.URL, Header: "Authorization", Scheme: "Bearer", Token: testToken})
	rt, err := a.RoundTripper(srv.Client().Transport)
	require.NoError(t, err)
	code, err := get(t, rt, srv.URL+"/v1/traces")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "Bearer "+testToken, h.last().Get("Authorization"))

	h.status = http.StatusUnauthorized
	for range 3 {
		code, _ := get(t, rt, srv.URL+"/v1/traces")
		assert.Equal(t, http.StatusUnauthorized, code)
	}
	h.status = http.StatusForbidden
	_, _ = get(t, rt, srv.URL+"/v1/traces")
	assert.Equal(t, 1, logs.FilterMessageSnippet("backend rejected credentials").Len())
}

func TestHTTPPlaintext(t *testing.T) {
	h := &httpBackend{}
	srv := httptest.NewServer(h)
	defer srv.Close()

	refused, _ := start(t, &Config{Endpoint: srv.URL, Header: "Authentication", Token: testToken})
	rt, err := refused.RoundTripper(http.DefaultTransport)
	require.NoError(t, err)
	_, err = get(t, rt, srv.URL+"/v1/traces")
	require.ErrorIs(t, err, errPlaintextRefused)
	assert.Empty(t, h.headers, "nothing sent without the opt-in")

	allowed, _ := start(t, &Config{Endpoint: srv.URL, Header: "Authentication", Token: testToken, Insecure: true})
	rt, err = allowed.RoundTripper(http.DefaultTransport)
	require.NoError(t, err)
	_, err = get(t, rt, srv.URL+"/v1/traces")
	require.NoError(t, err)
	assert.Equal(t, testToken, h.last().Get("Authentication"))
}

// A rotated token file (written elsewhere and renamed over, as kubelet and
// most tools do) is used for the next request without a restart.
func TestTokenFileRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(path, []byte(testToken+"\n"), 0o600))
	b := startGRPCBackend(t)
	a, logs := start(t, &Config{Endpoint: b.addr, Header: "Authentication", TokenFile: path, Insecure: true})
	c, err := dialGRPC(t, a, b.addr)
	require.NoError(t, err)
	require.NoError(t, check(c))
	assert.Equal(t, []string{testToken}, b.last("authentication"))

	const rotated = testToken + "-rotated"
	tmp := filepath.Join(dir, "token.new")
	require.NoError(t, os.WriteFile(tmp, []byte(rotated+"\n"), 0o600))
	require.NoError(t, os.Rename(tmp, path))
	assert.Eventually(t, func() bool {
		return check(c) == nil && b.last("authentication")[0] == rotated
	}, 10*time.Second, 50*time.Millisecond)

	// In place, too.
	require.NoError(t, os.WriteFile(path, []byte(testToken+"-again"), 0o600))
	assert.Eventually(t, func() bool {
		return check(c) == nil && b.last("authentication")[0] == testToken+"-again"
	}, 10*time.Second, 50*time.Millisecond)
	for _, e := range logs.All() {
		assert.NotContains(t, e.Message, rotated)
	}
}

func TestMissingTokenFileFailsStart(t *testing.T) {
	defer func(w time.Duration) { tokenFileWait = w }(tokenFileWait)
	tokenFileWait = 100 * time.Millisecond
	for name, content := range map[string]*string{"missing": nil, "empty": new(string)} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			if content != nil {
				require.NoError(t, os.WriteFile(path, []byte(*content), 0o600))
			}
			ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(componentType),
				&Config{Endpoint: "b:4317", Header: "Authentication", TokenFile: path})
			require.NoError(t, err)
			err = ext.Start(context.Background(), componenttest.NewNopHost())
			require.Error(t, err)
			assert.Contains(t, err.Error(), "OTLP_BACKEND_TOKEN_FILE")
			require.NoError(t, ext.Shutdown(context.Background()))
		})
	}
}
