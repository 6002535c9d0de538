package meshsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Sender exports one flush to a collector.
type Sender interface {
	Send(ctx context.Context, td ptrace.Traces) error
	Close() error
}

// NewSender returns an OTLP exporter: protocol "grpc" (endpoint host:port,
// Envoy's default) or "http" (endpoint host:port or a base URL; protobuf to
// /v1/traces, as Envoy's HTTP exporter sends it).
func NewSender(protocol, endpoint string) (Sender, error) {
	switch protocol {
	case "grpc":
		conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("otlp grpc %s: %w", endpoint, err)
		}
		return &grpcSender{conn: conn, client: ptraceotlp.NewGRPCClient(conn)}, nil
	case "http":
		if !strings.Contains(endpoint, "://") {
			endpoint = "http://" + endpoint
		}
		return &httpSender{url: strings.TrimSuffix(endpoint, "/") + "/v1/traces",
			client: &http.Client{Timeout: 10 * time.Second}}, nil
	}
	return nil, fmt.Errorf("protocol %q is not one of grpc, http", protocol)
}

type grpcSender struct {
	conn   *grpc.ClientConn
	client ptraceotlp.GRPCClient
}

func (g *grpcSender) Send(ctx context.Context, td ptrace.Traces) error {
	_, err := g.client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	return err
}

func (g *grpcSender) Close() error { return g.conn.Close() }

type httpSender struct {
	url    string
	client *http.Client
}

func (h *httpSender) Send(ctx context.Context, td ptrace.Traces) error {
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("otlp http: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

func (h *httpSender) Close() error { h.client.CloseIdleConnections(); return nil }

// RunOptions says how fast and how long Run drives the mesh.
type RunOptions struct {
	// Rate is Bookinfo page loads per second.
	Rate float64
	// Duration bounds the run; 0 runs until ctx is done.
	Duration time.Duration
	// OnFlush, if set, sees every export and its result.
	OnFlush func(Flush, error)
}

// Run drives sim in real time: page loads at opts.Rate, flush timers as
// they fall due, each flush sent with send. When the duration is over or ctx
// is cancelled, the proxies' buffers are drained and sent, so nothing is
// left behind. It returns the first send error, if any, after the drain.
func Run(ctx context.Context, sim *Sim, send Sender, opts RunOptions) error {
	if opts.Rate <= 0 {
		return errors.New("rate must be > 0")
	}
	var firstErr error
	deliver := func(ctx context.Context, fs []Flush) {
		for _, f := range fs {
			err := send.Send(ctx, f.Traces)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if opts.OnFlush != nil {
				opts.OnFlush(f, err)
			}
		}
	}
	start := time.Now()
	var end <-chan time.Time
	if opts.Duration > 0 {
		timer := time.NewTimer(opts.Duration)
		defer timer.Stop()
		end = timer.C
	}
	every := time.Duration(float64(time.Second) / opts.Rate)
	next := start
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		now := time.Now()
		for !next.After(now) {
			deliver(ctx, sim.Request(next))
			next = next.Add(every)
		}
		deliver(ctx, sim.Tick(now))
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-tick.C:
		}
	}
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	deliver(drainCtx, sim.Drain())
	return firstErr
}
