package groupcommitprocessor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/otelcol-istio/otelcol-istio/processor/groupcommitprocessor/internal/metadata"
)

// export makes one Envoy-shaped export: one resource tagged with id, n spans.
func export(id string, n int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("request", id)
	ss := rs.ScopeSpans().AppendEmpty()
	for i := range n {
		ss.Spans().AppendEmpty().SetName(fmt.Sprintf("%s/%d", id, i))
	}
	return td
}

// requestIDs lists the resources of td by their request tag.
func requestIDs(td ptrace.Traces) []string {
	var ids []string
	for _, rs := range td.ResourceSpans().All() {
		v, _ := rs.Resource().Attributes().Get("request")
		ids = append(ids, v.Str())
	}
	return ids
}

// gate is a next consumer whose calls each block until the test releases
// them with the error to return: it holds a "write" in flight.
type gate struct {
	mu      sync.Mutex
	calls   []ptrace.Traces
	entered chan struct{}
	release chan error
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}, 16), release: make(chan error)}
}

func (*gate) Capabilities() consumer.Capabilities { return consumer.Capabilities{MutatesData: true} }

func (g *gate) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	g.mu.Lock()
	g.calls = append(g.calls, td)
	g.mu.Unlock()
	g.entered <- struct{}{}
	return <-g.release
}

func (g *gate) call(i int) ptrace.Traces {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[i]
}

func newTestCommitter(t testing.TB, cfg *Config, next consumer.Traces) (*committer, *componenttest.Telemetry) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	tb, err := metadata.NewTelemetryBuilder(tel.NewTelemetrySettings())
	require.NoError(t, err)
	return newCommitter(cfg, next, tb), tel
}

// waiting is how many requests wait in groups.
func (c *committer) waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, g := range c.groups {
		n += len(g.members)
	}
	return n
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 10*time.Second, time.Millisecond)
}

// async runs ConsumeTraces on its own goroutine; the channel gets its error.
func async(ctx context.Context, c *committer, td ptrace.Traces) chan error {
	ch := make(chan error, 1)
	go func() { ch <- c.ConsumeTraces(ctx, td) }()
	return ch
}

// startWrite puts request "first" in flight in the gate.
func startWrite(t *testing.T, c *committer, g *gate) chan error {
	t.Helper()
	first := async(context.Background(), c, export("first", 5))
	<-g.entered
	return first
}

func TestAloneWhenNothingInFlight(t *testing.T) {
	sink := new(consumertest.TracesSink)
	c, tel := newTestCommitter(t, &Config{MaxSpans: 100}, sink)
	for i := range 3 {
		require.NoError(t, c.ConsumeTraces(context.Background(), export(strconv.Itoa(i), 5)))
	}
	require.Len(t, sink.AllTraces(), 3, "each request is passed on as it came")
	assert.Equal(t, []string{"1"}, requestIDs(sink.AllTraces()[1]))
	assertSum(t, tel, "otelcol_processor_group_commit_writes", map[bool]int64{false: 3})
}

func TestRequestsArrivingDuringAWriteShareTheNext(t *testing.T) {
	g := newGate()
	c, tel := newTestCommitter(t, &Config{MaxSpans: 1000}, g)
	first := startWrite(t, c, g)

	var followers []chan error
	for i := range 5 {
		followers = append(followers, async(context.Background(), c, export(strconv.Itoa(i), 5)))
		waitFor(t, func() bool { return c.waiting() == i+1 })
	}
	for _, f := range followers {
		select {
		case err := <-f:
			t.Fatalf("a follower was answered before its spans were written: %v", err)
		default:
		}
	}
	g.release <- nil
	require.NoError(t, <-first)

	<-g.entered
	merged := g.call(1)
	assert.Equal(t, []string{"0", "1", "2", "3", "4"}, requestIDs(merged), "one write, arrival order")
	assert.Equal(t, 25, merged.SpanCount())
	g.release <- nil
	for _, f := range followers {
		require.NoError(t, <-f)
	}
	assertSum(t, tel, "otelcol_processor_group_commit_writes", map[bool]int64{false: 1, true: 1})
	assertHistogram(t, tel, "otelcol_processor_group_commit_requests_per_write", 2, 6)
	assertHistogram(t, tel, "otelcol_processor_group_commit_spans_per_write", 2, 30)
}

// Under load (the previous write returned less than one write's duration
// ago) a request that finds no write in flight waits up to that duration for
// company instead of costing a queue write of its own.
func TestUnderLoadALoneRequestGathersCompany(t *testing.T) {
	g := newGate()
	c, _ := newTestCommitter(t, &Config{MaxSpans: 1000, MaxWait: time.Hour}, g)
	first := startWrite(t, c, g)
	time.Sleep(time.Second) // the first write takes 1 s: the gathering window
	g.release <- nil
	require.NoError(t, <-first)

	a := async(context.Background(), c, export("a", 5)) // no write in flight: gathers
	waitFor(t, func() bool { return c.waiting() == 1 })
	b := async(context.Background(), c, export("b", 5))
	<-g.entered
	assert.Equal(t, []string{"a", "b"}, requestIDs(g.call(1)), "one write for both")
	g.release <- nil
	require.NoError(t, <-a)
	require.NoError(t, <-b)
}

// The gathering leader's own size counts against max_bytes.
func TestGatheredGroupIsBoundedInBytes(t *testing.T) {
	g := newGate()
	one := new(ptrace.ProtoMarshaler).TracesSize(export("a", 5))
	c, _ := newTestCommitter(t, &Config{MaxSpans: 1000, MaxBytes: one + one/2, MaxWait: time.Hour}, g)
	first := startWrite(t, c, g)
	time.Sleep(time.Second)
	g.release <- nil
	require.NoError(t, <-first)

	a := async(context.Background(), c, export("a", 5)) // gathers
	waitFor(t, func() bool { return c.waiting() == 1 })
	b := async(context.Background(), c, export("b", 5)) // does not fit beside a
	<-g.entered
	assert.Equal(t, []string{"a"}, requestIDs(g.call(1)))
	g.release <- nil
	<-g.entered
	assert.Equal(t, []string{"b"}, requestIDs(g.call(2)))
	g.release <- nil
	require.NoError(t, <-a)
	require.NoError(t, <-b)
}

// At low load (longer since the last write than a write takes) a request
// is written at once, on the lone path, even with a large max_wait.
func TestAtLowLoadNoWait(t *testing.T) {
	g := newGate()
	c, tel := newTestCommitter(t, &Config{MaxSpans: 1000, MaxWait: time.Hour}, g)
	first := startWrite(t, c, g)
	time.Sleep(100 * time.Millisecond) // the write takes 100 ms
	g.release <- nil
	require.NoError(t, <-first)
	time.Sleep(300 * time.Millisecond) // idle for longer than a write takes

	second := async(context.Background(), c, export("second", 5))
	<-g.entered
	g.release <- nil
	require.NoError(t, <-second)
	// Both on the lone path (merged=false); a gathered write counts as merged.
	assertSum(t, tel, "otelcol_processor_group_commit_writes", map[bool]int64{false: 2})
}

func TestWriteErrorReachesEverySenderOfTheGroup(t *testing.T) {
	g := newGate()
	c, _ := newTestCommitter(t, &Config{MaxSpans: 1000}, g)
	first := startWrite(t, c, g)
	var followers []chan error
	for i := range 4 {
		followers = append(followers, async(context.Background(), c, export(strconv.Itoa(i), 5)))
	}
	waitFor(t, func() bool { return c.waiting() == 4 })
	g.release <- nil
	require.NoError(t, <-first)

	<-g.entered
	full := errors.New("sending queue is full")
	g.release <- full
	for _, f := range followers {
		err := <-f
		require.ErrorIs(t, err, full)
		assert.False(t, consumererror.IsPermanent(err), "a refusal stays retryable for the sender")
	}
	// The next request, alone again, gets its own result.
	next := async(context.Background(), c, export("later", 5))
	<-g.entered
	g.release <- nil
	require.NoError(t, <-next)
}

func TestGroupsAreBounded(t *testing.T) {
	g := newGate()
	c, _ := newTestCommitter(t, &Config{MaxSpans: 10}, g)
	first := startWrite(t, c, g)
	var followers []chan error
	sizes := []int{4, 4, 4, 4, 20, 1}
	for i, n := range sizes {
		followers = append(followers, async(context.Background(), c, export(strconv.Itoa(i), n)))
		waitFor(t, func() bool { return c.waiting() == i+1 })
	}
	g.release <- nil
	require.NoError(t, <-first)
	// 4+4, 4+4, then the oversized request alone (never split), then 1.
	want := [][]string{{"0", "1"}, {"2", "3"}, {"4"}, {"5"}}
	for i, ids := range want {
		<-g.entered
		assert.Equal(t, ids, requestIDs(g.call(i+1)))
		g.release <- nil
	}
	for _, f := range followers {
		require.NoError(t, <-f)
	}
}

func TestGroupsAreBoundedInBytes(t *testing.T) {
	g := newGate()
	one := new(ptrace.ProtoMarshaler).TracesSize(export("0", 5))
	c, _ := newTestCommitter(t, &Config{MaxSpans: 1000, MaxBytes: 2 * one}, g)
	first := startWrite(t, c, g)
	var followers []chan error
	for i := range 3 {
		followers = append(followers, async(context.Background(), c, export(strconv.Itoa(i), 5)))
		waitFor(t, func() bool { return c.waiting() == i+1 })
	}
	g.release <- nil
	require.NoError(t, <-first)
	for i, ids := range [][]string{{"0", "1"}, {"2"}} {
		<-g.entered
		assert.Equal(t, ids, requestIDs(g.call(i+1)))
		g.release <- nil
	}
	for _, f := range followers {
		require.NoError(t, <-f)
	}
}

// Attribute-dense requests: few spans and bytes, many items. Two of them
// fit max_spans and max_bytes but not max_items, so each is written alone.
func TestGroupsAreBoundedInItems(t *testing.T) {
	dense := func(id string) ptrace.Traces {
		td := export(id, 1)
		attrs := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes()
		for i := range 1000 {
			attrs.PutEmpty(strconv.Itoa(i))
		}
		return td
	}
	one := itemsOf(dense("0"))
	g := newGate()
	c, _ := newTestCommitter(t, &Config{MaxSpans: 1000, MaxBytes: 4 << 20, MaxItems: one + one/2}, g)
	first := startWrite(t, c, g)
	var followers []chan error
	for i := range 3 {
		followers = append(followers, async(context.Background(), c, dense(strconv.Itoa(i))))
		waitFor(t, func() bool { return c.waiting() == i+1 })
	}
	// Small requests still share a group with a dense one while they fit.
	followers = append(followers, async(context.Background(), c, export("3", 5)))
	waitFor(t, func() bool { return c.waiting() == 4 })
	g.release <- nil
	require.NoError(t, <-first)
	for i, ids := range [][]string{{"0"}, {"1"}, {"2", "3"}} {
		<-g.entered
		assert.Equal(t, ids, requestIDs(g.call(i+1)))
		g.release <- nil
	}
	for _, f := range followers {
		require.NoError(t, <-f)
	}
}

func TestCancelledWhileWaitingIsNotWritten(t *testing.T) {
	g := newGate()
	c, tel := newTestCommitter(t, &Config{MaxSpans: 1000}, g)
	first := startWrite(t, c, g)

	ctx, cancel := context.WithCancel(context.Background())
	gone := async(ctx, c, export("gone", 5))
	waitFor(t, func() bool { return c.waiting() == 1 })
	stays := async(context.Background(), c, export("stays", 5))
	alsoGone := async(ctx, c, export("also-gone", 5))
	waitFor(t, func() bool { return c.waiting() == 3 })
	cancel()
	require.ErrorIs(t, <-gone, context.Canceled)
	require.ErrorIs(t, <-alsoGone, context.Canceled)
	waitFor(t, func() bool { return c.waiting() == 1 })

	g.release <- nil
	require.NoError(t, <-first)
	<-g.entered
	assert.Equal(t, []string{"stays"}, requestIDs(g.call(1)), "the cancelled requests' spans never reach the queue")
	g.release <- nil
	require.NoError(t, <-stays)
	assertSum(t, tel, "otelcol_processor_group_commit_requests_cancelled", map[bool]int64{false: 2})
}

func TestCancelledWhileItsGroupIsWrittenGetsTheWriteResult(t *testing.T) {
	g := newGate()
	c, _ := newTestCommitter(t, &Config{MaxSpans: 1000}, g)
	first := startWrite(t, c, g)
	ctx, cancel := context.WithCancel(context.Background())
	leader := async(ctx, c, export("leader", 5))
	waitFor(t, func() bool { return c.waiting() == 1 })
	member := async(ctx, c, export("member", 5))
	waitFor(t, func() bool { return c.waiting() == 2 })
	g.release <- nil
	require.NoError(t, <-first)

	<-g.entered // the group's write is in flight
	cancel()
	runtime.Gosched()
	select {
	case err := <-member:
		t.Fatalf("answered while its spans were being written: %v", err)
	case err := <-leader:
		t.Fatalf("leader answered while its spans were being written: %v", err)
	default:
	}
	stored := errors.New("stored")
	g.release <- stored
	require.ErrorIs(t, <-leader, stored)
	require.ErrorIs(t, <-member, stored)
	assert.Equal(t, []string{"leader", "member"}, requestIDs(g.call(1)))
}

// TestConcurrentSendersLoseNothing: many senders, a slow next consumer;
// every span of every nil answer arrives exactly once, and the next consumer
// never sees two calls at once.
func TestConcurrentSendersLoseNothing(t *testing.T) {
	sink := new(consumertest.TracesSink)
	var inFlight, overlap atomic.Int32
	next, err := consumer.NewTraces(func(ctx context.Context, td ptrace.Traces) error {
		if inFlight.Add(1) > 1 {
			overlap.Add(1)
		}
		defer inFlight.Add(-1)
		time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		return sink.ConsumeTraces(ctx, td)
	})
	require.NoError(t, err)
	c, _ := newTestCommitter(t, &Config{MaxSpans: 64, MaxBytes: 4 << 20}, next)

	const senders, perSender = 32, 100
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				n := 1 + (s+i)%7
				assert.NoError(t, c.ConsumeTraces(context.Background(), export(fmt.Sprintf("%d-%d", s, i), n)))
			}
		})
	}
	wg.Wait()
	want := 0
	for s := range senders {
		for i := range perSender {
			want += 1 + (s+i)%7
		}
	}
	assert.Equal(t, want, sink.SpanCount())
	seen := map[string]bool{}
	for _, td := range sink.AllTraces() {
		assert.LessOrEqual(t, td.SpanCount(), 64)
		for _, id := range requestIDs(td) {
			assert.False(t, seen[id], "request %s written twice", id)
			seen[id] = true
		}
	}
	assert.Len(t, seen, senders*perSender)
	assert.Zero(t, overlap.Load(), "two writes were in flight at once")
	assert.Less(t, len(sink.AllTraces()), senders*perSender, "nothing was merged")
}

func TestFactoryPipeline(t *testing.T) {
	sink := new(consumertest.TracesSink)
	f := NewFactory()
	p, err := f.CreateTraces(context.Background(), processortest.NewNopSettings(metadata.Type), f.CreateDefaultConfig(), sink)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	assert.True(t, p.Capabilities().MutatesData)
	require.NoError(t, p.ConsumeTraces(context.Background(), export("x", 3)))
	require.NoError(t, p.Shutdown(context.Background()))
	assert.Equal(t, 3, sink.SpanCount())
}

func assertSum(t *testing.T, tel *componenttest.Telemetry, name string, want map[bool]int64) {
	t.Helper()
	m, err := tel.GetMetric(name)
	require.NoError(t, err)
	got := map[bool]int64{}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		v, _ := dp.Attributes.Value("merged")
		got[v.AsBool()] += dp.Value
	}
	assert.Equal(t, want, got, name)
}

func assertHistogram(t *testing.T, tel *componenttest.Telemetry, name string, count uint64, sum int64) {
	t.Helper()
	m, err := tel.GetMetric(name)
	require.NoError(t, err)
	dps := m.Data.(metricdata.Histogram[int64]).DataPoints
	require.Len(t, dps, 1)
	assert.Equal(t, count, dps[0].Count, name)
	assert.Equal(t, sum, dps[0].Sum, name)
}

// BenchmarkAlone is what group_commit costs a request when no write is in
// flight (the low-load path): a mutex round trip and the metrics.
func BenchmarkAlone(b *testing.B) {
	c, _ := newTestCommitter(b, &Config{MaxSpans: 4096}, consumertest.NewNop())
	td := export("x", 5)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.ConsumeTraces(context.Background(), td); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConcurrent: 64 senders per CPU into a next consumer that takes
// 1 ms per call, like an fsync'd queue write; requests/write shows the
// grouping.
func BenchmarkConcurrent(b *testing.B) {
	var calls atomic.Int64
	next, _ := consumer.NewTraces(func(context.Context, ptrace.Traces) error {
		calls.Add(1)
		time.Sleep(time.Millisecond)
		return nil
	})
	c, _ := newTestCommitter(b, &Config{MaxSpans: 4096, MaxBytes: 4 << 20, MaxItems: 262144}, next)
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.ConsumeTraces(context.Background(), export("x", 5)); err != nil {
				b.Error(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(max(calls.Load(), 1)), "requests/write")
}
