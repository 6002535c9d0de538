package harness

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	spb "google.golang.org/genproto/googleapis/rpc/status"
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
	// Bytes is the uncompressed protobuf size of the export, the size
	// backends limit (HTTP: the body as decompressed; gRPC: the message).
	Bytes int
	// At is when the request arrived.
	At time.Time
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
	// Message replaces the default error message (gRPC status message; HTTP:
	// the message of a protobuf Status body, as OTLP/HTTP answers carry).
	Message string
	// EchoHeader, when set, appends that request header's value to the error
	// message, as some backends echo the auth header they refuse.
	EchoHeader string
	// EchoForms, with EchoHeader, echoes the header value in every form
	// EchoForms lists, each after its name, instead of as it came.
	EchoForms bool
	// MinSpans, when above zero, applies the failure only to requests of at
	// least that many spans; smaller ones are accepted (a partial failure,
	// such as a backend refusing large exports).
	MinSpans int
}

// applies says whether the failure is answered to a request of spans spans.
func (f Failure) applies(spans int) bool {
	return (f.GRPCCode != codes.OK || f.HTTPStatus != 0) && spans >= f.MinSpans
}

// message is the error text answered to a request with headers.
func (f Failure) message(headers map[string][]string) string {
	msg := f.Message
	if msg == "" {
		msg = "backend failure injected by the test"
	}
	if f.EchoHeader != "" {
		value := strings.Join(headers[strings.ToLower(f.EchoHeader)], ",")
		if !f.EchoForms {
			return msg + "; refused " + f.EchoHeader + ": " + value
		}
		var b strings.Builder
		b.WriteString(msg + "; refused " + f.EchoHeader)
		for _, form := range EchoForms {
			b.WriteString("; " + form.Name + ": " + form.Encode(value))
		}
		return b.String()
	}
	return msg
}

// EchoForm is one way a backend writes a value back into its answer.
type EchoForm struct {
	Name   string
	Encode func(string) string
}

// EchoForms are the ways backends were seen or are known to echo a header
// value: as sent, quoted by Go's %q and %+q, escaped by JSON encoders (Go's;
// ASCII-only with upper-case hex, as Jackson writes it), URL-encoded, and in
// base64.
var EchoForms = []EchoForm{
	{"raw", func(v string) string { return v }},
	{"go-q", func(v string) string { return fmt.Sprintf("%q", v) }},
	{"go-plus-q", func(v string) string { return fmt.Sprintf("%+q", v) }},
	{"json", func(v string) string { b, _ := json.Marshal(v); return string(b) }},
	{"json-ascii", func(v string) string {
		b, _ := json.Marshal(v)
		var out strings.Builder
		for _, r := range string(b) {
			if r < 0x80 {
				out.WriteRune(r)
			} else {
				for _, u := range utf16.Encode([]rune{r}) {
					fmt.Fprintf(&out, `\u%04X`, u)
				}
			}
		}
		return out.String()
	}},
	{"url-query", url.QueryEscape},
	{"url-path", url.PathEscape},
	{"base64", func(v string) string { return base64.StdEncoding.EncodeToString([]byte(v)) }},
	{"base64-url", func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }},
}

// Size limits the harness backend applies, as real OTLP servers do.
const (
	// DefaultMaxGRPCMessage is grpc-go's own default MaxRecvMsgSize (4 MiB),
	// which most OTLP/gRPC servers (Jaeger, the collector's receiver) keep:
	// a larger message, after decompression, gets ResourceExhausted.
	DefaultMaxGRPCMessage = 4 << 20
	// DefaultMaxHTTPBody is the harness's OTLP/HTTP body limit after
	// decompression: larger bodies get 413, as from real servers (their
	// limits vary: Jaeger's is 20 MiB, ours 4 MiB).
	DefaultMaxHTTPBody = 4 << 20
)

// BackendLimits are the backend's size limits, in bytes of the
// uncompressed message or body; zero means the default.
type BackendLimits struct {
	GRPCMessage int
	HTTPBody    int
}

// Backend is a real OTLP trace backend: a gRPC server and an HTTP server
// built on pdata's ptraceotlp, recording every request and its headers. It
// stands in for the managed tracing backend the collector exports to.
type Backend struct {
	t      testing.TB
	limits BackendLimits
	// httpTooLarge counts OTLP/HTTP bodies refused with 413.
	httpTooLarge int

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
	return StartBackendWithLimits(t, BackendLimits{})
}

// StartBackendWithLimits is StartBackend with other size limits.
func StartBackendWithLimits(t testing.TB, limits BackendLimits) *Backend {
	t.Helper()
	if limits.GRPCMessage == 0 {
		limits.GRPCMessage = DefaultMaxGRPCMessage
	}
	if limits.HTTPBody == 0 {
		limits.HTTPBody = DefaultMaxHTTPBody
	}
	b := &Backend{t: t, limits: limits, changed: make(chan struct{})}
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
	b.grpcServer = grpc.NewServer(grpc.MaxRecvMsgSize(b.limits.GRPCMessage))
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

// Limits are the backend's size limits.
func (b *Backend) Limits() BackendLimits { return b.limits }

// HTTPTooLarge is the number of OTLP/HTTP bodies refused with 413. (gRPC
// messages over the limit are refused by grpc-go before the handler and
// are not seen here.)
func (b *Backend) HTTPTooLarge() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.httpTooLarge
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

// record stores a request and returns the failure to answer it with, or
// the zero Failure to accept it.
func (b *Backend) record(transport string, headers map[string][]string, td ptrace.Traces, size int) Failure {
	at := time.Now()
	b.mu.Lock()
	f := b.failure
	b.mu.Unlock()
	if f.Delay > 0 {
		time.Sleep(f.Delay)
	}
	if !f.applies(td.SpanCount()) {
		f = Failure{}
	}
	accepted := f.GRPCCode == codes.OK && f.HTTPStatus == 0
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests = append(b.requests, Request{
		Transport: transport, Headers: headers, Traces: td, Accepted: accepted, Bytes: size, At: at,
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
	size := (&ptrace.ProtoMarshaler{}).TracesSize(td)
	if f := g.b.record("grpc", headers, td, size); f.GRPCCode != codes.OK {
		return ptraceotlp.NewExportResponse(), status.Error(f.GRPCCode, f.message(headers))
	}
	return ptraceotlp.NewExportResponse(), nil
}

func (b *Backend) handleHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// One byte over the limit is enough to know the body is too large.
	limit := int64(b.limits.HTTPBody)
	body := io.LimitReader(r.Body, limit+1)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, "bad gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = io.LimitReader(zr, limit+1)
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if int64(len(raw)) > limit {
		b.mu.Lock()
		b.httpTooLarge++
		b.mu.Unlock()
		http.Error(w, fmt.Sprintf("request body larger than max %d", limit), http.StatusRequestEntityTooLarge)
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
	if f := b.record("http", headers, td, len(raw)); f.HTTPStatus != 0 {
		if f.Message == "" && f.EchoHeader == "" {
			http.Error(w, "backend failure injected by the test", f.HTTPStatus)
			return
		}
		// As the OTLP/HTTP spec says: a protobuf Status, whose message the
		// exporter reads and logs.
		body, _ := proto.Marshal(&spb.Status{Code: int32(codes.Unknown), Message: f.message(headers)})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(f.HTTPStatus)
		_, _ = w.Write(body)
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
