package harness

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Request is one export the backend received, as it arrived.
type Request struct {
	// Transport is "grpc" or "http".
	Transport string
	// Headers holds the gRPC metadata or HTTP headers, keys lower-cased.
	Headers map[string][]string
	// Traces is the decoded payload.
	Traces ptrace.Traces
	// Accepted says whether the backend answered with success. Rejected
	// requests are recorded too, so tests can see what was attempted.
	Accepted bool
}

// Failure makes the backend answer exports with an error instead of success.
// The zero value means "answer normally".
type Failure struct {
	// GRPCCode is returned to gRPC exports (e.g. codes.Unavailable).
	GRPCCode codes.Code
	// HTTPStatus is returned to HTTP exports (e.g. 503).
	HTTPStatus int
	// Delay is waited before answering, success or not.
	Delay time.Duration
}

// Backend is a real OTLP trace backend: a gRPC server and an HTTP server
// built on pdata's ptraceotlp, recording every request and its headers. It
// stands in for the managed tracing backend the collector exports to.
type Backend struct {
	t testing.TB

	mu       sync.Mutex
	requests []Request
	failure  Failure
	changed  chan struct{} // closed and replaced on every new request

	grpcAddr, httpAddr string
	grpcServer         *grpc.Server
	httpServer         *http.Server
	running            bool
}

// StartBackend starts the backend on free loopback ports; it stops with the test.
func StartBackend(t testing.TB) *Backend {
	t.Helper()
	b := &Backend{t: t, changed: make(chan struct{})}
	b.grpcAddr = "127.0.0.1:" + FreePort(t)
	b.httpAddr = "127.0.0.1:" + FreePort(t)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	return b
}

// GRPCEndpoint is host:port of the OTLP/gRPC server.
func (b *Backend) GRPCEndpoint() string { return b.grpcAddr }

// HTTPEndpoint is the base URL of the OTLP/HTTP server (POST {url}/v1/traces).
func (b *Backend) HTTPEndpoint() string { return "http://" + b.httpAddr }

// Start (re)opens both listeners on the backend's fixed ports, so a test
// can take the backend down with Stop and bring it back.
func (b *Backend) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running {
		return nil
	}
	gl, err := listenRetry(b.grpcAddr)
	if err != nil {
		return err
	}
	hl, err := listenRetry(b.httpAddr)
	if err != nil {
		gl.Close()
		return err
	}
	b.grpcServer = grpc.NewServer()
	ptraceotlp.RegisterGRPCServer(b.grpcServer, &grpcTraces{b: b})
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", b.handleHTTP)
	b.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.grpcServer.Serve(gl) }()
	go func() { _ = b.httpServer.Serve(hl) }()
	b.running = true
	return nil
}

// Stop closes both servers at once, dropping connections, as a backend
// outage would.
func (b *Backend) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.running {
		return
	}
	b.grpcServer.Stop()
	_ = b.httpServer.Close()
	b.running = false
}

// SetFailure makes every following export fail (or slow down) as described.
func (b *Backend) SetFailure(f Failure) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failure = f
}

// Requests returns a copy of every request received so far.
func (b *Backend) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Request(nil), b.requests...)
}

// Traces returns every accepted span, merged into one ptrace.Traces in
// arrival order.
func (b *Backend) Traces() ptrace.Traces { return MergeAccepted(b.Requests()) }

// MergeAccepted merges the payloads of the accepted requests among reqs
// into one ptrace.Traces, in order.
func MergeAccepted(reqs []Request) ptrace.Traces {
	out := ptrace.NewTraces()
	for _, r := range reqs {
		if !r.Accepted {
			continue
		}
		for i := 0; i < r.Traces.ResourceSpans().Len(); i++ {
			r.Traces.ResourceSpans().At(i).CopyTo(out.ResourceSpans().AppendEmpty())
		}
	}
	return out
}

// EachSpan calls fn for every span of td, with its resource.
func EachSpan(td ptrace.Traces, fn func(ptrace.ResourceSpans, ptrace.Span)) {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			spans := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				fn(rs, spans.At(k))
			}
		}
	}
}

// SpanCount is the number of spans in accepted requests.
func (b *Backend) SpanCount() int {
	n := 0
	for _, r := range b.Requests() {
		if r.Accepted {
			n += r.Traces.SpanCount()
		}
	}
	return n
}

// WaitForSpans waits until at least n spans were accepted, and fails the test
// after timeout.
func (b *Backend) WaitForSpans(n int, timeout time.Duration) {
	b.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		changed := b.changed
		b.mu.Unlock()
		if got := b.SpanCount(); got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			b.t.Fatalf("backend: waited %s for %d spans, got %d", timeout, n, b.SpanCount())
		}
	}
}

// record stores a request and says whether to accept it.
func (b *Backend) record(transport string, headers map[string][]string, td ptrace.Traces) Failure {
	b.mu.Lock()
	f := b.failure
	b.mu.Unlock()
	if f.Delay > 0 {
		time.Sleep(f.Delay)
	}
	accepted := f.GRPCCode == codes.OK && f.HTTPStatus == 0
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests = append(b.requests, Request{
		Transport: transport, Headers: headers, Traces: td, Accepted: accepted,
	})
	close(b.changed)
	b.changed = make(chan struct{})
	return f
}

type grpcTraces struct {
	ptraceotlp.UnimplementedGRPCServer
	b *Backend
}

func (g *grpcTraces) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	headers := map[string][]string{}
	for k, v := range md {
		headers[strings.ToLower(k)] = v
	}
	td := ptrace.NewTraces()
	req.Traces().CopyTo(td)
	if f := g.b.record("grpc", headers, td); f.GRPCCode != codes.OK {
		return ptraceotlp.NewExportResponse(), status.Error(f.GRPCCode, "backend failure injected by the test")
	}
	return ptraceotlp.NewExportResponse(), nil
}

const maxBackendBody = 64 << 20

func (b *Backend) handleHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body := io.LimitReader(r.Body, maxBackendBody)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, "bad gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = io.LimitReader(zr, maxBackendBody)
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := ptraceotlp.NewExportRequest()
	contentType := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(contentType, "application/json"):
		err = req.UnmarshalJSON(raw)
	default:
		err = req.UnmarshalProto(raw)
	}
	if err != nil {
		http.Error(w, "bad OTLP payload: "+err.Error(), http.StatusBadRequest)
		return
	}
	headers := map[string][]string{}
	for k, v := range r.Header {
		headers[strings.ToLower(k)] = v
	}
	td := ptrace.NewTraces()
	req.Traces().CopyTo(td)
	if f := b.record("http", headers, td); f.HTTPStatus != 0 {
		http.Error(w, "backend failure injected by the test", f.HTTPStatus)
		return
	}
	resp, _ := ptraceotlp.NewExportResponse().MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = io.Copy(w, bytes.NewReader(resp))
}

// listenRetry listens on addr, retrying briefly: after Stop the port may
// take a moment to be free again.
func listenRetry(addr string) (net.Listener, error) {
	var lastErr error
	for range 50 {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l, nil
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("backend: listen %s: %w", addr, errors.Join(lastErr))
}
