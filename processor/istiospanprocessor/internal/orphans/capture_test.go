package orphans

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// namedOrphans is one orphaned CLIENT root from a sidecar per name.
func namedOrphans(names ...string) ptrace.Traces {
	td := ptrace.NewTraces()
	for i, name := range names {
		addProxy(td, name).add(spanOpts{trace: fmt.Sprintf("%032x", i+1), span: fmt.Sprintf("%016x", i+1),
			kind: ptrace.SpanKindClient, nodeID: "sidecar~10.0.0.1~" + name + "-abc.default~default.svc.cluster.local",
			upstreamCluster: "outbound|80||x.default.svc.cluster.local"})
	}
	return td
}

// junkFlood sends n distinct junk names, 1,000 per batch.
func junkFlood(d *Detector, prefix string, n int) {
	names := make([]string, 0, 1000)
	for i := range n {
		names = append(names, fmt.Sprintf("%s-%06d.junk", prefix, i))
		if len(names) == cap(names) || i == n-1 {
			d.Process(namedOrphans(names...))
			names = names[:0]
		}
	}
}

func metricServices(t *testing.T, got metricdata.Metrics) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, p := range got.Data.(metricdata.Sum[int64]).DataPoints {
		v, ok := p.Attributes.Value(AttrService)
		require.True(t, ok)
		out[v.AsString()] = p.Value
	}
	return out
}

// The attack: 100,000 junk names, then a real service. It is listed
// under its own name, in the report and in the metrics, at most ServiceIdle
// after the flood's last name, and the cap holds throughout.
func TestCapRecoversAfterJunkFlood(t *testing.T) {
	d, tt := newTelemetryDetector(t, DefaultConfig())
	clk := &fakeClock{t: time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)}
	d.now = clk.now
	const junk = 100_000
	junkFlood(d, "a", junk)
	require.Len(t, d.Report(), MaxServices+1)

	// Right after the flood every slot was seen just now: the real service
	// is counted under _other.
	d.Process(namedOrphans("reviews.default"))
	assert.Empty(t, findReport(d, "reviews.default"), "no idle slot yet")

	clk.advance(ServiceIdle / 2)
	d.Process(namedOrphans("reviews.default"))
	assert.Empty(t, findReport(d, "reviews.default"), "junk still within ServiceIdle")

	clk.advance(ServiceIdle / 2)
	d.Process(namedOrphans("reviews.default"))
	rep := d.Report()
	require.Len(t, rep, MaxServices+1, "still capped")
	got := findReport(d, "reviews.default")
	require.Len(t, got, 1, "listed under its own name once the junk is idle for ServiceIdle")
	assert.Equal(t, int64(1), got[0].Orphans, "counted from when it got its slot; earlier spans are under _other")

	var outbound, orphans int64
	for _, r := range rep {
		outbound += r.Outbound
		orphans += r.Orphans
	}
	assert.Equal(t, int64(junk+3), outbound, "evicted counts move to _other: the totals are kept")
	assert.Equal(t, int64(junk+3), orphans)

	m, err := tt.GetMetric(MetricOrphans)
	require.NoError(t, err)
	series := metricServices(t, m)
	assert.Len(t, series, MaxServices+1, "metric series follow the registry")
	assert.Equal(t, int64(1), series["reviews.default"])
	var sum int64
	for _, v := range series {
		sum += v
	}
	assert.Equal(t, int64(junk+3), sum, "the metric totals are kept too")

	// It keeps its slot while it keeps sending, whatever the junk does.
	for range 10 {
		clk.advance(ServiceIdle / 3)
		junkFlood(d, "b", 2*MaxServices)
		d.Process(namedOrphans("reviews.default"))
	}
	got = findReport(d, "reviews.default")
	require.Len(t, got, 1)
	assert.Equal(t, int64(11), got[0].Orphans)
	assert.Len(t, d.Report(), MaxServices+1)
}

// A service that keeps sending is never pushed out by new names, and the
// slots of a mesh under the cap are never touched.
func TestCapKeepsActiveServices(t *testing.T) {
	d, clk := newTestDetector(t, DefaultConfig())
	d.services.max = 3
	d.Process(namedOrphans("a.default", "b.default", "c.default"))
	clk.advance(2 * ServiceIdle)
	d.Process(namedOrphans("a.default", "b.default"))
	d.Process(namedOrphans("new.default")) // c idle: new takes its slot
	d.Process(namedOrphans("newer.default"))
	names := map[string]int64{}
	for _, r := range d.Report() {
		names[r.Service] = r.Orphans
	}
	assert.Equal(t, map[string]int64{"a.default": 2, "b.default": 2, "new.default": 1, OtherService: 2}, names,
		"c's count moved to _other, newer counted there: a and b were seen within ServiceIdle")
}

// The bound that lets a flood skip the scan must never hide an idle slot.
func TestCapOldestBound(t *testing.T) {
	r := newServiceRegistry(3, time.Minute)
	m := int64(time.Minute)
	r.add(noSender, "a", 0, 1, 0, 0)
	r.add(noSender, "b", 10, 1, 0, 0)
	r.add(noSender, "c", 20, 1, 0, 0)
	r.add(noSender, "x", m-1, 1, 0, 0) // nothing idle yet
	assert.NotContains(t, r.byKey, "x")
	r.add(noSender, "a", m, 1, 0, 0) // a refreshed: b is the oldest now
	r.add(noSender, "y", m+10, 1, 0, 0)
	assert.Contains(t, r.byKey, "y", "b idle for a minute")
	assert.NotContains(t, r.byKey, "b")
	r.add(noSender, "z", m+19, 1, 0, 0)
	assert.NotContains(t, r.byKey, "z", "c seen 1ns less than a minute ago")
	r.add(noSender, "z", m+20, 1, 0, 0)
	assert.Contains(t, r.byKey, "z")
	assert.Equal(t, int64(4), r.other.outbound.Load(), "b, c (folded), the first x and the first z")
}

// Counting and evicting concurrently loses nothing: every count ends up
// under its name or under _other. Run with -race.
func TestCapConcurrentTotals(t *testing.T) {
	r := newServiceRegistry(8, time.Microsecond)
	var clock atomic.Int64
	var wg sync.WaitGroup
	const workers, per = 4, 5000
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				r.add(noSender, fmt.Sprintf("w%d-%d", w, i%50), clock.Add(1000), 1, 1, 1)
			}
		}()
	}
	wg.Wait()
	var outbound, orphans, relinked int64
	r.mu.RLock()
	assert.LessOrEqual(t, len(r.byKey), 8)
	r.mu.RUnlock()
	for _, s := range append(r.snapshotStats(), r.other) {
		outbound += s.outbound.Load()
		orphans += s.orphans.Load()
		relinked += s.relinked.Load()
	}
	assert.Equal(t, int64(workers*per), outbound)
	assert.Equal(t, int64(workers*per), orphans)
	assert.Equal(t, int64(workers*per), relinked)
}

func (r *serviceRegistry) snapshotStats() []*serviceStats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*serviceStats, 0, len(r.byKey))
	for _, s := range r.byKey {
		out = append(out, s)
	}
	return out
}

func findReport(d *Detector, service string) []ServiceReport {
	var out []ServiceReport
	for _, r := range d.Report() {
		if r.Service == service {
			out = append(out, r)
		}
	}
	return out
}

// BenchmarkServiceCap shows that the cost per span does not grow with a junk
// flood: a known service's batch before and after 100,000 junk names, and a
// batch of 1,000 new names when every slot is fresh (they go to _other
// without a scan) or when every slot is idle (the first 500 each scan the
// registry once and take a slot).
func BenchmarkServiceCap(b *testing.B) {
	known := readTraces(b, fxNoPropagate)
	for _, c := range []struct {
		name   string
		flood  int
		listed bool
	}{
		{"listed/no-flood", 0, true},
		{"listed/after-flood=100000", 100_000, true},
		{"under-other/after-flood=100000", 100_000, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			d, clk := newTestDetector(b, DefaultConfig())
			junkFlood(d, "a", c.flood)
			if c.listed {
				clk.advance(ServiceIdle)
			}
			d.Process(known)
			require.Len(b, findReport(d, "productpage.default"), map[bool]int{true: 1, false: 0}[c.listed])
			n := known.SpanCount()
			for b.Loop() {
				d.Process(known)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/span")
		})
	}
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("b-%06d.junk", i)
	}
	batch := namedOrphans(names...)
	for _, idle := range []bool{false, true} {
		b.Run(fmt.Sprintf("new-names/slots-idle=%t", idle), func(b *testing.B) {
			d, clk := newTestDetector(b, DefaultConfig())
			junkFlood(d, "a", MaxServices)
			for b.Loop() {
				if idle {
					clk.advance(ServiceIdle)
				}
				d.Process(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(names)), "ns/span")
		})
	}
}

// noSender is the sender of batches with no client.Info (in-process callers).
var noSender netip.Addr

// from is a context as the OTLP receiver builds it for a peer at ip.
func from(ip string, port int) context.Context {
	return client.NewContext(context.Background(), client.Info{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: port}})
}

// Issue 29 item 1: one sender re-sending a request that names 500 made-up
// services every 25 s holds every slot against the idle rule alone. A real
// service from another sender is listed under its own name at its first span,
// and stays listed while the flood goes on; the flood never gets more than
// the slots nobody else wants.
func TestCapOneSenderCannotHoldTheSlots(t *testing.T) {
	d, tt := newTelemetryDetector(t, DefaultConfig())
	clk := &fakeClock{t: time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)}
	d.now = clk.now
	junk := make([]string, MaxServices)
	for i := range junk {
		junk[i] = fmt.Sprintf("made-up-%03d.flood", i)
	}
	flood := namedOrphans(junk...)
	resend := func() {
		// A new connection each time: the port changes, the sender does not.
		d.ProcessFrom(from("10.0.0.66", 40000+int(clk.t.Unix()%1000)), flood)
		clk.advance(25 * time.Second)
	}
	for range 4 {
		resend()
	}
	require.Len(t, d.Report(), MaxServices, "the flood holds every slot")

	realServices := []string{"reviews.default", "ratings.default", "details.default"}
	for i, name := range realServices {
		d.ProcessFrom(from(fmt.Sprintf("10.0.1.%d", i+1), 50000), namedOrphans(name))
		got := findReport(d, name)
		require.Len(t, got, 1, "%s listed at its first span while the flood holds the slots", name)
		assert.Equal(t, int64(1), got[0].Orphans)
	}
	for range 8 { // the flood goes on for over three minutes
		resend()
		for i, name := range realServices {
			d.ProcessFrom(from(fmt.Sprintf("10.0.1.%d", i+1), 50001), namedOrphans(name))
		}
	}
	rep := d.Report()
	assert.Len(t, rep, MaxServices+1, "500 names and _other")
	for _, name := range realServices {
		got := findReport(d, name)
		require.Len(t, got, 1, "%s still listed", name)
		assert.Equal(t, int64(9), got[0].Orphans, "every span of %s counted under its own name", name)
	}
	d.services.mu.RLock()
	assert.Equal(t, MaxServices-len(realServices), d.services.held[netip.MustParseAddr("10.0.0.66")])
	d.services.mu.RUnlock()

	m, err := tt.GetMetric(MetricOrphans)
	require.NoError(t, err)
	series := metricServices(t, m)
	assert.Len(t, series, MaxServices+1)
	for _, name := range realServices {
		assert.Equal(t, int64(9), series[name], "%s's own orphans series", name)
	}
}

// Two senders that both want every slot share them: neither can keep more
// than half plus one, and they do not trade slots back and forth.
func TestCapSendersShareTheSlots(t *testing.T) {
	r := newServiceRegistry(10, time.Minute)
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	var now int64
	for round := range 3 {
		for i := range 10 {
			now++
			r.add(a, fmt.Sprintf("a-%d", i), now, 1, 0, 0)
			r.add(b, fmt.Sprintf("b-%d", i), now, 1, 0, 0)
		}
		assert.Equal(t, map[netip.Addr]int{a: 5, b: 5}, r.held, "round %d", round)
	}
	// An unknown sender (no client.Info) is one sender like any other.
	r.add(noSender, "local", now, 1, 0, 0)
	assert.Contains(t, r.byKey, "local")
	assert.Len(t, r.byKey, 10)
}
