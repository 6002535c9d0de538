package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"

	// The collector's OTLP exporter sends gzip by default.
	_ "google.golang.org/grpc/encoding/gzip"
)

// Attributes the printer reads (istio_span's README lists them).
const (
	attrServiceName  = "service.name"
	attrOriginalName = "istio.original_service_name"
	attrOrphan       = "istio.orphan"
)

// Column widths: the longest Bookinfo service.name
// (istio-ingressgateway.istio-system) and span name
// (productpage.default:9080/productpage, shown without clusterDomain).
const (
	serviceWidth  = 33
	spanNameWidth = 36
)

// clusterDomain is left out of span names on screen: every Envoy span name
// in the mesh has it, and without it a line fits a terminal.
const clusterDomain = ".svc.cluster.local"

// printer is the OTLP/gRPC endpoint the demo's collector exports to: it
// prints each span it gets as one short line, the normalised service and
// the orphan flag first. It reads the spans as pdata, so the screen does not
// depend on the debug exporter's text layout.
type printer struct {
	ptraceotlp.UnimplementedGRPCServer
	srv  *grpc.Server
	addr string

	mu    sync.Mutex
	out   io.Writer
	muted bool // after the closing report: spans still flow, silently
}

// startPrinter listens on a free loopback port.
func startPrinter(out io.Writer) (*printer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &printer{srv: grpc.NewServer(), addr: ln.Addr().String(), out: out}
	ptraceotlp.RegisterGRPCServer(p.srv, p)
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *printer) stop() { p.srv.Stop() }

// header is printed once above the span lines.
func header() string {
	return fmt.Sprintf("%-*s  %-6s  %-6s  %-*s  %-8s  %s\n", serviceWidth, "SERVICE (normalised)", "ORPHAN", "KIND",
		spanNameWidth, "SPAN", "TRACE", "NOTE")
}

// Export prints one line per span and accepts the request.
func (p *printer) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	var b strings.Builder
	rss := req.Traces().ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		service, was := str(rs.Resource().Attributes(), attrServiceName), str(rs.Resource().Attributes(), attrOriginalName)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				b.WriteString(spanLine(service, was, spans.At(k)))
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.muted {
		_, _ = io.WriteString(p.out, b.String())
	}
	return ptraceotlp.NewExportResponse(), nil
}

// mute stops printing span lines; exports are still accepted.
func (p *printer) mute() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.muted = true
}

// spanLine is one span: service, orphan flag, kind, name, trace id prefix,
// and what istio_span changed (the old name, an added link).
func spanLine(service, was string, s ptrace.Span) string {
	orphan := "-"
	if v, ok := s.Attributes().Get(attrOrphan); ok && v.Type() == pcommon.ValueTypeBool && v.Bool() {
		orphan = "ORPHAN"
	}
	var notes []string
	if was != "" {
		notes = append(notes, "was "+was)
	}
	if orphan != "-" && s.Links().Len() > 0 {
		notes = append(notes, "linked")
	}
	traceID := s.TraceID().String()
	line := fmt.Sprintf("%-*s  %-6s  %-6s  %-*s  %-8s  %s", serviceWidth, service, orphan, kind(s.Kind()),
		spanNameWidth, cut(strings.Replace(s.Name(), clusterDomain, "", 1), spanNameWidth), traceID[:8], strings.Join(notes, ", "))
	return strings.TrimRight(line, " ") + "\n"
}

func kind(k ptrace.SpanKind) string {
	switch k {
	case ptrace.SpanKindServer:
		return "SERVER"
	case ptrace.SpanKindClient:
		return "CLIENT"
	default:
		return strings.ToUpper(strings.TrimPrefix(k.String(), "Span"))
	}
}

func str(attrs pcommon.Map, key string) string {
	if v, ok := attrs.Get(key); ok {
		return v.AsString()
	}
	return ""
}

// cut shortens s to n characters, marking the cut.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
