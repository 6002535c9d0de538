package collectorbench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"

	"github.com/otelcol-istio/otelcol-istio/bench/workload"
	"github.com/otelcol-istio/otelcol-istio/e2e/meshsim"
)

// rawCodec passes already-encoded protobuf bytes through gRPC untouched, so
// the replayer never marshals and the sink never unmarshals into pdata.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// Request is one pre-encoded OTLP export: one proxy flush.
type Request struct {
	Body  []byte
	Spans int
}

// httpHead is the HTTP/1.1 request head for a body of n bytes: with it the
// HTTP replayer writes requests as bytes on kept-alive connections, without
// net/http's client machinery, which would cost more than the collector's
// side of the exchange.
func httpHead(host string, n int) []byte {
	return []byte("POST /v1/traces HTTP/1.1\r\nHost: " + host +
		"\r\nContent-Type: application/x-protobuf\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n")
}

// Pool builds at least spans spans of the mixed Bookinfo workload
// (workload.Mix), one request per proxy export, encoded once up front.
func Pool(spans int, seed uint64) ([]Request, error) {
	return PoolOf(workload.Mix, spans, seed)
}

// PoolOf is Pool for any mix of kinds (workload.Mix, workload.OrphanHeavy).
// Different seeds give different trace ids and x-request-ids.
func PoolOf(mix []struct {
	Kind  workload.Kind
	Share float64
}, spans int, seed uint64) ([]Request, error) {
	var all []meshsim.Flush
	for i, m := range mix {
		fs, err := workload.Flushes(m.Kind, int(float64(spans)*m.Share)+1, seed+uint64(i))
		if err != nil {
			return nil, err
		}
		all = append(all, fs...)
	}
	// Interleave the kinds, as exports from many proxies arrive.
	out := make([]Request, 0, len(all))
	for _, f := range all {
		body, err := ptraceotlp.NewExportRequestFromTraces(f.Traces).MarshalProto()
		if err != nil {
			return nil, err
		}
		out = append(out, Request{Body: body, Spans: f.Traces.SpanCount()})
	}
	shuffle(out, seed)
	return out, nil
}

// SizedPool is Pool with perRequest spans or more in each request: that many
// proxy exports merged into one request, each keeping its own resource, as an
// agent or a gateway that batches in front of the collector would send them.
// perRequest <= 6 is Pool itself (one proxy export of about 5 spans).
func SizedPool(spans, perRequest int, seed uint64) ([]Request, error) {
	if perRequest <= 6 {
		return Pool(spans, seed)
	}
	var all []meshsim.Flush
	for i, m := range workload.Mix {
		fs, err := workload.Flushes(m.Kind, int(float64(spans)*m.Share)+1, seed+uint64(i))
		if err != nil {
			return nil, err
		}
		all = append(all, fs...)
	}
	x := seed | 1
	for i := len(all) - 1; i > 0; i-- { // interleave the kinds
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		j := int(x % uint64(i+1))
		all[i], all[j] = all[j], all[i]
	}
	var out []Request
	td := ptrace.NewTraces()
	for _, f := range all {
		f.Traces.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
		if td.SpanCount() < perRequest {
			continue
		}
		body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		if err != nil {
			return nil, err
		}
		out = append(out, Request{Body: body, Spans: td.SpanCount()})
		td = ptrace.NewTraces()
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("pool of %d spans has no request of %d spans", spans, perRequest)
	}
	return out, nil
}

func shuffle(rs []Request, seed uint64) {
	x := seed | 1
	for i := len(rs) - 1; i > 0; i-- {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		j := int(x % uint64(i+1))
		rs[i], rs[j] = rs[j], rs[i]
	}
}

// LoadResult is what one load phase achieved.
type LoadResult struct {
	Target   float64 // spans/s asked for
	Duration time.Duration
	Sent     int64 // spans in requests sent
	Accepted int64 // spans in requests the collector accepted
	Refused  int64 // spans in requests it answered with an error
	Errors   []string
	// Latencies are the answer times of accepted requests, sorted.
	Latencies []time.Duration
}

// Latency is the q-quantile (0..1) of the accepted requests' answer times.
func (r LoadResult) Latency(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	return r.Latencies[min(int(q*float64(len(r.Latencies))), len(r.Latencies)-1)]
}

// Achieved is the accepted rate in spans/s.
func (r LoadResult) Achieved() float64 { return float64(r.Accepted) / r.Duration.Seconds() }

// Replayer sends pre-encoded requests to a collector at a set rate.
type Replayer struct {
	protocol string
	pool     []Request
	heads    [][]byte // per pool entry, for HTTP
	grpc     []*grpc.ClientConn
	endpoint string
	conns    []*httpConn // one per worker, for HTTP
	workers  int
}

// httpConn is one kept-alive HTTP/1.1 connection of the replayer.
type httpConn struct {
	c net.Conn
	r *bufio.Reader
}

// NewReplayer connects to the collector's OTLP receiver: protocol "grpc"
// (endpoint host:port) or "http" (endpoint host:port).
func NewReplayer(protocol, endpoint string, pool []Request, workers int) (*Replayer, error) {
	r := &Replayer{protocol: protocol, pool: pool, workers: workers}
	switch protocol {
	case "grpc":
		// A few connections, as many proxies would open.
		for range min(workers, 4) {
			c, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
			if err != nil {
				return nil, err
			}
			r.grpc = append(r.grpc, c)
		}
	case "http":
		r.endpoint = endpoint
		r.conns = make([]*httpConn, workers)
		for _, q := range pool {
			r.heads = append(r.heads, httpHead(endpoint, len(q.Body)))
		}
	default:
		return nil, fmt.Errorf("protocol %q is not one of grpc, http", protocol)
	}
	return r, nil
}

// Close releases the connections.
func (r *Replayer) Close() {
	for _, c := range r.grpc {
		_ = c.Close()
	}
	for _, c := range r.conns {
		if c != nil {
			_ = c.c.Close()
		}
	}
}

func (r *Replayer) send(ctx context.Context, worker, i int) error {
	body := r.pool[i].Body
	if r.protocol == "grpc" {
		var reply []byte
		return r.grpc[worker%len(r.grpc)].Invoke(ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &body, &reply)
	}
	c := r.conns[worker]
	if c == nil {
		nc, err := net.DialTimeout("tcp", r.endpoint, 5*time.Second)
		if err != nil {
			return err
		}
		c = &httpConn{c: nc, r: bufio.NewReaderSize(nc, 4096)}
		r.conns[worker] = c
	}
	keep, err := r.exchange(c, i)
	if err != nil || !keep {
		_ = c.c.Close()
		r.conns[worker] = nil
	}
	return err
}

// exchange writes one pre-built request and reads the response; keep says
// whether the connection stays usable.
func (r *Replayer) exchange(c *httpConn, i int) (keep bool, err error) {
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	bufs := net.Buffers{r.heads[i], r.pool[i].Body}
	if _, err = bufs.WriteTo(c.c); err != nil {
		return false, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return !resp.Close, fmt.Errorf("http %d", resp.StatusCode)
	}
	return !resp.Close, nil
}

// Load sends at rate spans/s for d. Workers pace themselves on a shared
// schedule: a worker that falls behind sends at once, so a collector that
// answers slowly shows up as an achieved rate below the target.
func (r *Replayer) Load(ctx context.Context, rate float64, d time.Duration) LoadResult {
	res := LoadResult{Target: rate}
	var (
		next     atomic.Int64 // index of the next request in the pool, and of the schedule
		sent     atomic.Int64
		accepted atomic.Int64
		refused  atomic.Int64
		errMu    sync.Mutex
		wg       sync.WaitGroup
	)
	avg := 0.0
	for _, q := range r.pool {
		avg += float64(q.Spans)
	}
	avg /= float64(len(r.pool))
	interval := time.Duration(float64(time.Second) * avg / rate) // between requests, all workers together
	start := time.Now()
	end := start.Add(d)
	lats := make([][]time.Duration, r.workers)
	for w := range r.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				due := start.Add(time.Duration(i) * interval)
				if !due.Before(end) || !time.Now().Before(end) || ctx.Err() != nil {
					return
				}
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
				}
				k := int(i) % len(r.pool)
				q := r.pool[k]
				sent.Add(int64(q.Spans))
				t0 := time.Now()
				if err := r.send(ctx, w, k); err != nil {
					refused.Add(int64(q.Spans))
					errMu.Lock()
					if len(res.Errors) < 5 {
						res.Errors = append(res.Errors, err.Error())
					}
					errMu.Unlock()
					continue
				}
				lats[w] = append(lats[w], time.Since(t0))
				accepted.Add(int64(q.Spans))
			}
		}()
	}
	wg.Wait()
	res.Duration = max(time.Since(start), d)
	for _, l := range lats {
		res.Latencies = append(res.Latencies, l...)
	}
	slices.Sort(res.Latencies)
	res.Sent, res.Accepted, res.Refused = sent.Load(), accepted.Load(), refused.Load()
	return res
}
