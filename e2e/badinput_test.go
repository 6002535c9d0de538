package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// Bad input to the shipped config's receivers: each gets a clear 4xx or gRPC
// status, the process stays up, and the next good request is delivered.
// The limits are the shipped ones: 4 MiB per HTTP body (after
// decompression) and per gRPC message.

const receiveLimit = 4 << 20

// oneSpan is a small valid request, with its span named name.
func oneSpan(name string) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "badinput")
	s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetName(name)
	s.SetTraceID([16]byte{1, 2, 3})
	s.SetSpanID([8]byte{4, 5, 6})
	return td
}

func protoBody(t *testing.T, td ptrace.Traces) []byte {
	t.Helper()
	b, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withAttr is oneSpan with one more attribute on the span.
func withAttrs(name string, attrs map[string]string) ptrace.Traces {
	td := oneSpan(name)
	a := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes()
	for k, v := range attrs {
		a.PutStr(k, v)
	}
	return td
}

// spanNamed finds the span with that name at the backend.
func spanNamed(b *harness.Backend, name string) (found ptrace.Span, ok bool) {
	harness.EachSpan(b.Traces(), func(_ ptrace.ResourceSpans, s ptrace.Span) {
		if !ok && s.Name() == name {
			found, ok = s, true
		}
	})
	return found, ok
}

func TestBadInputHTTP(t *testing.T) {
	backend := harness.StartBackend(t)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", t.TempDir()))
	base := "http://" + col.HTTPEndpoint
	bigValue := strings.Repeat("x", receiveLimit+1024)
	for _, tc := range []struct {
		name, contentType string
		headers           map[string]string
		body              func(t *testing.T) []byte
		want              int
	}{
		{"malformed-protobuf", "application/x-protobuf", nil,
			func(*testing.T) []byte { return []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01} }, http.StatusBadRequest},
		{"malformed-json", "application/json", nil,
			func(*testing.T) []byte { return []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":`) }, http.StatusBadRequest},
		{"wrong-content-type", "text/plain", nil,
			func(t *testing.T) []byte { return protoBody(t, oneSpan("wrong-type")) }, http.StatusUnsupportedMediaType},
		{"truncated-gzip", "application/x-protobuf", map[string]string{"Content-Encoding": "gzip"},
			func(t *testing.T) []byte {
				z := gzipped(t, protoBody(t, withAttrs("truncated", map[string]string{"a": strings.Repeat("y", 4096)})))
				return z[:len(z)/2]
			}, http.StatusBadRequest},
		{"garbage-gzip", "application/x-protobuf", map[string]string{"Content-Encoding": "gzip"},
			func(*testing.T) []byte { return []byte("this is not gzip at all, not even the magic bytes") }, http.StatusBadRequest},
		{"over-size-limit", "application/x-protobuf", nil,
			func(t *testing.T) []byte {
				return protoBody(t, withAttrs("too-big", map[string]string{"big": bigValue}))
			}, http.StatusRequestEntityTooLarge},
		{"decompression-bomb", "application/x-protobuf", map[string]string{"Content-Encoding": "gzip"},
			func(t *testing.T) []byte {
				// 64 MiB of zeros inflates from about 64 KiB.
				return gzipped(t, make([]byte, 64<<20))
			}, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			resp, err := harness.PostHTTP(ctx, base, tc.contentType, body, tc.headers)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			t.Logf("%d-byte body: %d %.120q", len(body), resp.Status, resp.Body)
			if resp.Status != tc.want && (tc.want != http.StatusRequestEntityTooLarge || resp.Status != http.StatusBadRequest) {
				t.Errorf("status %d, want %d", resp.Status, tc.want)
			}
			if resp.Status < 400 || resp.Status >= 500 {
				t.Errorf("status %d is not a client error", resp.Status)
			}
			assertStillServing(t, col, backend, "after-"+tc.name)
		})
	}
}

// Strange but valid spans are accepted and delivered as sent.
func TestOddSpansDelivered(t *testing.T) {
	backend := harness.StartBackend(t)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", t.TempDir()))
	many := map[string]string{}
	for i := range 10000 {
		many[fmt.Sprintf("attr.%05d", i)] = fmt.Sprintf("value-%d", i)
	}
	for _, tc := range []struct {
		name  string
		td    ptrace.Traces
		check func(t *testing.T, s ptrace.Span)
	}{
		{"empty-attribute-values", withAttrs("empty-attrs", map[string]string{"": "", "empty": ""}),
			func(t *testing.T, s ptrace.Span) {
				if v, ok := s.Attributes().Get("empty"); !ok || v.Str() != "" {
					t.Errorf("empty attribute: %v %v", v, ok)
				}
			}},
		{"huge-attribute-value", withAttrs("huge-attr", map[string]string{"huge": strings.Repeat("h", 1<<20)}),
			func(t *testing.T, s ptrace.Span) {
				if v, _ := s.Attributes().Get("huge"); len(v.Str()) != 1<<20 {
					t.Errorf("huge attribute arrived with %d bytes", len(v.Str()))
				}
			}},
		{"10k-attributes", withAttrs("many-attrs", many),
			func(t *testing.T, s ptrace.Span) {
				if n := s.Attributes().Len(); n != 10000 {
					t.Errorf("span arrived with %d attributes, want 10000", n)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, send := range []string{"grpc", "http"} {
				before := backend.SpanCount()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				var err error
				if send == "grpc" {
					err = harness.SendGRPC(ctx, col.GRPCEndpoint, tc.td)
				} else {
					err = harness.SendHTTP(ctx, "http://"+col.HTTPEndpoint, "proto", tc.td)
				}
				cancel()
				if err != nil {
					t.Fatalf("%s: %v", send, err)
				}
				backend.WaitForSpans(before+1, 15*time.Second)
			}
			name := tc.td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Name()
			s, ok := spanNamed(backend, name)
			if !ok {
				t.Fatalf("span %q not at the backend", name)
			}
			tc.check(t, s)
		})
	}
}

// Invalid UTF-8 in span strings: protobuf says strings are UTF-8, but the
// collector's OTLP decoders do not check. istio_span (invalid_utf8: reject,
// the default) refuses the whole request with InvalidArgument/400 naming the
// field, before a strict backend would refuse a whole export of many
// senders' spans. Nothing of the request is delivered, not even its valid
// span; the refusal is counted and logged with the sender's address.
func TestInvalidUTF8(t *testing.T) {
	backend := harness.StartBackend(t)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", t.TempDir()))
	td := withAttrs("utf8-\xff\xfe-bad", map[string]string{"k\xc3\x28": "v\xa0\xa1"})
	good := oneSpan("good-in-same-request")
	good.ResourceSpans().At(0).CopyTo(td.ResourceSpans().AppendEmpty())
	const field = "resource_spans[0].scope_spans[0].spans[0].name"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	grpcErr := harness.SendGRPC(ctx, col.GRPCEndpoint, td)
	if c := status.Code(grpcErr); c != codes.InvalidArgument {
		t.Errorf("gRPC answered %v (%v), want InvalidArgument", c, grpcErr)
	}
	if msg := status.Convert(grpcErr).Message(); !strings.Contains(msg, "invalid UTF-8 in "+field) {
		t.Errorf("gRPC message %q does not name the field %s", msg, field)
	}

	resp, err := harness.PostHTTP(ctx, "http://"+col.HTTPEndpoint, "application/x-protobuf", protoBody(t, td), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The body is an OTLP Status in protobuf; the message is in it as text.
	if resp.Status != http.StatusBadRequest || !strings.Contains(resp.Body, "invalid UTF-8 in "+field) {
		t.Errorf("HTTP protobuf answered %d %q, want 400 naming %s", resp.Status, resp.Body, field)
	}

	// OTLP/JSON with raw invalid bytes in a string.
	jsonBody := `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10",` +
		`"spanId":"0102030405060708","name":"json-` + "\xff" + `-bad"}]}]}]}`
	resp, err = harness.PostHTTP(ctx, "http://"+col.HTTPEndpoint, "application/json", []byte(jsonBody), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusBadRequest || !strings.Contains(resp.Body, "invalid UTF-8") {
		t.Errorf("HTTP JSON answered %d %q, want 400 for invalid UTF-8", resp.Status, resp.Body)
	}
	t.Logf("invalid UTF-8: gRPC %q; HTTP %d %.160q", status.Convert(grpcErr).Message(), resp.Status, resp.Body)

	col.WaitForLog("Refused spans with a string that is not valid UTF-8", 10*time.Second)
	if logs := col.Logs(); !strings.Contains(logs, `"client": "127.0.0.1:`) && !strings.Contains(logs, "client\t127.0.0.1:") {
		t.Errorf("the refusal log does not name the sender:\n%s", grepLines(logs, "UTF-8"))
	}
	metrics := get(t, "http://"+col.MetricsEndpoint+"/metrics")
	re := regexp.MustCompile(`otelcol_processor_istio_span_spans_rejected(_total)?\{[^}]*reason="invalid_utf8"[^}]*\} 5\b`)
	if !re.MatchString(metrics) {
		t.Errorf("want 5 spans rejected (2+2 requests of 2 spans, 1 JSON span):\n%s", grepLines(metrics, "rejected"))
	}

	assertStillServing(t, col, backend, "after-invalid-utf8")
	if _, ok := spanNamed(backend, "good-in-same-request"); ok {
		t.Error("a span of a refused request was delivered")
	}
}

// With invalid_utf8: replace (set here through the yaml: provider), the same
// request is accepted and every span is delivered, with each run of
// invalid bytes replaced by U+FFFD.
func TestInvalidUTF8Replace(t *testing.T) {
	backend := harness.StartBackend(t)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", t.TempDir()),
		"yaml:processors::istio_span::invalid_utf8: replace")
	td := withAttrs("utf8-\xff\xfe-bad", map[string]string{"k\xc3\x28": "v\xa0\xa1"})
	good := oneSpan("good-in-same-request")
	good.ResourceSpans().At(0).CopyTo(td.ResourceSpans().AppendEmpty())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := harness.SendGRPC(ctx, col.GRPCEndpoint, td); err != nil {
		t.Fatalf("gRPC: %v", err)
	}
	backend.WaitForSpans(2, 15*time.Second)
	if _, ok := spanNamed(backend, "good-in-same-request"); !ok {
		t.Error("the valid span was not delivered")
	}
	s, ok := spanNamed(backend, "utf8-\uFFFD-bad")
	if !ok {
		t.Fatal("the repaired span was not delivered under its repaired name")
	}
	if v, ok := s.Attributes().Get("k\uFFFD("); !ok || v.Str() != "v\uFFFD" {
		t.Errorf("repaired attribute: got %v (present %v), want k\uFFFD( = v\uFFFD", v.AsRaw(), ok)
	}
	metrics := get(t, "http://"+col.MetricsEndpoint+"/metrics")
	re := regexp.MustCompile(`otelcol_processor_istio_span_strings_repaired(_total)?\{[^}]*reason="invalid_utf8"[^}]*\} 3\b`)
	if !re.MatchString(metrics) {
		t.Errorf("want 3 strings repaired (name, key, value):\n%s", grepLines(metrics, "repaired"))
	}
}

// rawCodec sends bytes as they are, to put malformed protobuf on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func TestBadInputGRPC(t *testing.T) {
	backend := harness.StartBackend(t)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", t.TempDir()))
	conn, err := grpc.NewClient(col.GRPCEndpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(128<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
	zeros := withAttrs("zeros", map[string]string{"z": string(make([]byte, 16<<20))})
	for _, tc := range []struct {
		name string
		call func(ctx context.Context) error
		want codes.Code
	}{
		// otlp_guard's wire walk refuses it before pdata decodes it (without
		// the guard, grpc-go answers Internal, "error unmarshalling request").
		{"malformed-protobuf", func(ctx context.Context) error {
			in, out := []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}, []byte(nil)
			return conn.Invoke(ctx, method, &in, &out, grpc.ForceCodec(rawCodec{}))
		}, codes.InvalidArgument},
		{"over-size-limit", func(ctx context.Context) error {
			_, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(
				withAttrs("too-big", map[string]string{"big": strings.Repeat("x", receiveLimit+1024)})))
			return err
		}, codes.ResourceExhausted},
		{"decompression-bomb", func(ctx context.Context) error {
			// 16 MiB of zeros compress to a few KiB.
			_, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(zeros),
				grpc.UseCompressor(grpcgzip.Name))
			return err
		}, codes.ResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := tc.call(ctx)
			t.Logf("%v", err)
			if got := status.Code(err); got != tc.want {
				t.Errorf("gRPC status %v, want %v", got, tc.want)
			}
			assertStillServing(t, col, backend, "after-grpc-"+tc.name)
		})
	}
}

// assertStillServing checks the process is up and a good span, named name,
// goes through both receivers to the backend.
func assertStillServing(t *testing.T, col *harness.Collector, backend *harness.Backend, name string) {
	t.Helper()
	if col.Exited() {
		t.Fatalf("collector exited:\n%s", col.Logs())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := backend.SpanCount()
	if err := harness.SendHTTP(ctx, "http://"+col.HTTPEndpoint, "proto", oneSpan(name+"-http")); err != nil {
		t.Fatalf("good HTTP request after bad input: %v", err)
	}
	if err := harness.SendGRPC(ctx, col.GRPCEndpoint, oneSpan(name+"-grpc")); err != nil {
		t.Fatalf("good gRPC request after bad input: %v", err)
	}
	backend.WaitForSpans(before+2, 15*time.Second)
}
