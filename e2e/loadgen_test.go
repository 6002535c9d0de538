package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// loadGen sends spans at a steady rate over OTLP/gRPC, as a mesh of Envoy
// sidecars would, and remembers which spans the collector accepted. Every
// span carries a unique id (a per-run prefix and a sequence number), so the
// backend's copy can be counted exactly: delivered, lost, duplicated.
type loadGen struct {
	t       testing.TB
	prefix  uint32
	batch   int
	seq     atomic.Uint32
	stop    chan struct{}
	stopped chan struct{}

	mu       sync.Mutex
	conn     *grpc.ClientConn
	client   ptraceotlp.GRPCClient
	accepted map[uint32]bool // spans whose request got OK
	refused  map[uint32]bool // spans whose request got an error
	codes    map[codes.Code]int
}

// startLoad sends batch-span requests to endpoint at about spansPerSec.
func startLoad(t testing.TB, endpoint string, spansPerSec, batch int) *loadGen {
	t.Helper()
	l := &loadGen{
		t: t, prefix: rand.Uint32(), batch: batch,
		stop: make(chan struct{}), stopped: make(chan struct{}),
		accepted: map[uint32]bool{}, refused: map[uint32]bool{}, codes: map[codes.Code]int{},
	}
	l.retarget(endpoint)
	interval := time.Duration(float64(time.Second) * float64(batch) / float64(spansPerSec))
	go l.run(interval)
	t.Cleanup(l.Stop)
	return l
}

// retarget points the generator at a (restarted) collector's new endpoint.
func (l *loadGen) retarget(endpoint string) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		l.t.Fatal(err)
	}
	l.mu.Lock()
	old := l.conn
	l.conn, l.client = conn, ptraceotlp.NewGRPCClient(conn)
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

func (l *loadGen) run(interval time.Duration) {
	defer close(l.stopped)
	// A few senders, so that a slow answer does not stall the rate.
	ticks := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range ticks {
				_ = l.sendOne()
			}
		})
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			close(ticks)
			wg.Wait()
			return
		case <-tick.C:
			select {
			case ticks <- struct{}{}:
			default: // every sender busy: skip, the rate dips
			}
		}
	}
}

// sendOne sends one request of l.batch new spans and records the answer,
// which it returns.
func (l *loadGen) sendOne() error {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "loadgen")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	ids := make([]uint32, l.batch)
	now := time.Now()
	for i := range ids {
		ids[i] = l.seq.Add(1)
		s := spans.AppendEmpty()
		s.SetTraceID(l.traceID(ids[i]))
		s.SetSpanID(l.spanID(ids[i]))
		s.SetName("GET /load")
		s.SetKind(ptrace.SpanKindServer)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
		s.Attributes().PutInt("e2e.seq", int64(ids[i]))
		s.Attributes().PutStr("http.url", "http://productpage.default:9080/load")
	}
	l.mu.Lock()
	client := l.client
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if err == nil {
			l.accepted[id] = true
		} else {
			l.refused[id] = true
		}
	}
	if err != nil {
		l.codes[status.Code(err)]++
	}
	return err
}

func (l *loadGen) traceID(seq uint32) pcommon.TraceID {
	var id pcommon.TraceID
	binary.BigEndian.PutUint32(id[0:4], l.prefix)
	binary.BigEndian.PutUint32(id[12:16], seq)
	return id
}

func (l *loadGen) spanID(seq uint32) pcommon.SpanID {
	var id pcommon.SpanID
	binary.BigEndian.PutUint32(id[0:4], l.prefix)
	binary.BigEndian.PutUint32(id[4:8], seq)
	return id
}

// Stop stops sending and waits for requests in flight.
func (l *loadGen) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.stopped
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
}

// errorCodes is what the sender was told when the collector refused, by code.
func (l *loadGen) errorCodes() map[codes.Code]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[codes.Code]int{}
	for k, v := range l.codes {
		out[k] = v
	}
	return out
}

// tally is what happened to the generator's spans.
type tally struct {
	Sent       int // spans the generator made
	Accepted   int // spans in requests the collector answered OK
	Refused    int // spans in requests that got an error (the sender knows)
	Delivered  int // distinct accepted spans the backend accepted
	Lost       int // accepted, never delivered
	Duplicated int // extra copies the backend received
	// RefusedButDelivered counts spans whose sender got an error but which
	// arrived anyway (e.g. the collector persisted them, then was killed
	// before answering): not lost, and the sender may send them again.
	RefusedButDelivered int
}

func (tl tally) String() string {
	return fmt.Sprintf("sent=%d accepted=%d refused=%d delivered=%d lost=%d duplicated=%d refused-but-delivered=%d",
		tl.Sent, tl.Accepted, tl.Refused, tl.Delivered, tl.Lost, tl.Duplicated, tl.RefusedButDelivered)
}

// count compares what the generator sent with what the backend accepted.
func (l *loadGen) count(b *harness.Backend) tally {
	seen := map[uint32]int{}
	for _, r := range b.Requests() {
		if !r.Accepted {
			continue
		}
		harness.EachSpan(r.Traces, func(_ ptrace.ResourceSpans, s ptrace.Span) {
			id := s.SpanID()
			if binary.BigEndian.Uint32(id[0:4]) == l.prefix {
				seen[binary.BigEndian.Uint32(id[4:8])]++
			}
		})
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	tl := tally{Sent: int(l.seq.Load()), Accepted: len(l.accepted), Refused: len(l.refused)}
	for id, n := range seen {
		tl.Duplicated += n - 1
		if l.accepted[id] {
			tl.Delivered++
		} else {
			tl.RefusedButDelivered++
		}
	}
	tl.Lost = tl.Accepted - tl.Delivered
	return tl
}

// waitDelivered waits until no accepted span is missing at the backend, or
// timeout, and returns the final tally.
func (l *loadGen) waitDelivered(b *harness.Backend, timeout time.Duration) tally {
	deadline := time.Now().Add(timeout)
	for {
		tl := l.count(b)
		if tl.Lost == 0 || time.Now().After(deadline) {
			return tl
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// scrapeMetric sums the samples of a metric on the collector's own
// Prometheus endpoint (0 when absent).
func scrapeMetric(t testing.TB, col *harness.Collector, name string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + col.MetricsEndpoint + "/metrics")
	if err != nil {
		t.Logf("scrape %s: %v", name, err)
		return 0
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}
