package collectorbench

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // the collector's otlp_grpc exporter compresses with gzip by default
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// Sink is a lean OTLP/gRPC trace backend: it accepts every export and
// counts its spans by walking the protobuf wire format, without building
// pdata, so it costs the machine little next to the collector under test.
type Sink struct {
	srv      *grpc.Server
	httpSrv  *http.Server
	addr     string
	httpAddr string
	spans    atomic.Int64
}

// StartSink listens on a free loopback port.
func StartSink() (*Sink, error) {
	addr, err := harness.FreeAddr()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Sink{addr: l.Addr().String()}
	s.srv = grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.MaxRecvMsgSize(64<<20))
	s.srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Export", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var body []byte
			if decodeErr := dec(&body); decodeErr != nil {
				return nil, decodeErr
			}
			s.spans.Add(int64(countSpans(body)))
			return &emptyReply, nil
		}}},
	}, struct{}{})
	go func() { _ = s.srv.Serve(l) }()

	// OTLP/HTTP too, only to measure the HTTP replayer's ceiling.
	if s.httpAddr, err = harness.FreeAddr(); err != nil {
		return nil, err
	}
	hl, err := net.Listen("tcp", s.httpAddr)
	if err != nil {
		return nil, err
	}
	s.httpSrv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.spans.Add(int64(countSpans(body)))
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = s.httpSrv.Serve(hl) }()
	return s, nil
}

// HTTPEndpoint is host:port of the sink's OTLP/HTTP server.
func (s *Sink) HTTPEndpoint() string { return s.httpAddr }

// emptyReply is an empty ExportTraceServiceResponse.
var emptyReply []byte

// Endpoint is host:port for the collector's otlp_grpc exporter.
func (s *Sink) Endpoint() string { return s.addr }

// Spans is the number of spans received so far.
func (s *Sink) Spans() int64 { return s.spans.Load() }

// Stop closes the server.
func (s *Sink) Stop() {
	s.srv.Stop()
	if s.httpSrv != nil {
		_ = s.httpSrv.Close()
	}
}

// countSpans counts ExportTraceServiceRequest.resource_spans(1)
// .scope_spans(2).spans(2) in an encoded request.
func countSpans(b []byte) int {
	n := 0
	forEach(b, 1, func(rs []byte) {
		forEach(rs, 2, func(ss []byte) {
			forEach(ss, 2, func([]byte) { n++ })
		})
	})
	return n
}

// forEach calls fn with every length-delimited field number num in b.
func forEach(b []byte, num protowire.Number, fn func([]byte)) {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return
		}
		b = b[l:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return
			}
			if n == num {
				fn(v)
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(n, typ, b)
		if m < 0 {
			return
		}
		b = b[m:]
	}
}
