package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ReadTraces reads an OTLP/JSON file such as the fixtures in testdata.
func ReadTraces(t testing.TB, path string) ptrace.Traces {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return td
}

// SendGRPC exports td to an OTLP/gRPC endpoint with pdata's own OTLP client,
// the same wire path an Envoy sidecar uses.
func SendGRPC(ctx context.Context, endpoint string, td ptrace.Traces) error {
	return SendGRPCFrom(ctx, endpoint, "", td)
}

// SendGRPCFrom is SendGRPC from the local address localIP (for example
// 127.0.0.2, which Linux's loopback serves), so that a test can play several
// senders; "" lets the system choose.
func SendGRPCFrom(ctx context.Context, endpoint, localIP string, td ptrace.Traces) error {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if localIP != "" {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		}))
	}
	conn, err := grpc.NewClient(endpoint, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	return err
}

// HTTPResponse is what an OTLP/HTTP endpoint answered.
type HTTPResponse struct {
	Status int
	Body   string
}

// PostHTTP sends a raw body to {baseURL}/v1/traces with the given
// Content-Type and extra headers, for tests of good and bad input alike.
func PostHTTP(ctx context.Context, baseURL, contentType string, body []byte, headers map[string]string) (HTTPResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/traces", bytes.NewReader(body))
	if err != nil {
		return HTTPResponse{}, err
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return HTTPResponse{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return HTTPResponse{Status: resp.StatusCode, Body: string(b)}, nil
}

// SendHTTP exports td as OTLP/HTTP protobuf or JSON (encoding "proto" or
// "json") and fails unless the endpoint answers 200.
func SendHTTP(ctx context.Context, baseURL, encoding string, td ptrace.Traces) error {
	req := ptraceotlp.NewExportRequestFromTraces(td)
	var (
		body        []byte
		err         error
		contentType string
	)
	switch encoding {
	case "json":
		body, err = req.MarshalJSON()
		contentType = "application/json"
	default:
		body, err = req.MarshalProto()
		contentType = "application/x-protobuf"
	}
	if err != nil {
		return err
	}
	resp, err := PostHTTP(ctx, baseURL, contentType, body, nil)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK {
		return fmt.Errorf("OTLP/HTTP export: status %d: %s", resp.Status, resp.Body)
	}
	return nil
}
