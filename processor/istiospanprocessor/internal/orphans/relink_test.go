package orphans

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/ptracetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// In fixture 02x productpage forwards x-request-id but not traceparent: its
// SERVER span (trace A) and its two CLIENT roots (traces B, C) share the id
// c41e8b7a-…, and so do details' and reviews' SERVER spans downstream.
const (
	ppServer        = "87e7c5405cde9fbe"
	orphanToDetails = "288ce221e446097c"
	orphanToReviews = "69bada79a64698c3"
)

func fixtureTraceA(t *testing.T) string {
	// Read the real trace id rather than trusting a constant.
	return refOf(findSpan(t, readTraces(t, fxForwardsXRID), ppServer)).trace
}

func TestRelinkInOneBatch(t *testing.T) {
	d, _ := newTestDetector(t, DefaultConfig())
	td := readTraces(t, fxForwardsXRID)
	d.Process(td)
	ta := fixtureTraceA(t)
	assert.ElementsMatch(t, []linkRef{
		{from: orphanToDetails, to: spanRef{ta, ppServer}, reason: LinkReasonRequestID},
		{from: orphanToReviews, to: spanRef{ta, ppServer}, reason: LinkReasonRequestID},
	}, links(td), "the orphan roots carry the links to productpage's SERVER span; details and reviews (other workloads, same id) get none")
	rep := reportFor(t, d, "productpage.default")
	assert.Equal(t, int64(2), rep.Relinked)
	assert.Equal(t, DiagnosisRequestIDOnly, rep.Diagnosis)
}

func TestRelinkAcrossBatchesServerFirst(t *testing.T) {
	d, clk := newTestDetector(t, DefaultConfig())
	full := readTraces(t, fxForwardsXRID)
	servers := subset(full, isKind(ptrace.SpanKindServer))
	clients := subset(full, isKind(ptrace.SpanKindClient))
	d.Process(servers)
	clk.advance(5 * time.Second) // Envoy flushes every 5s
	d.Process(clients)
	ta := fixtureTraceA(t)
	assert.Empty(t, links(servers), "the first span never gets a link: it is gone downstream")
	assert.ElementsMatch(t, []linkRef{
		{from: orphanToDetails, to: spanRef{ta, ppServer}, reason: LinkReasonRequestID},
		{from: orphanToReviews, to: spanRef{ta, ppServer}, reason: LinkReasonRequestID},
	}, links(clients))
	assert.Equal(t, int64(2), reportFor(t, d, "productpage.default").Relinked)
}

func TestRelinkAcrossBatchesOrphanFirst(t *testing.T) {
	d, clk := newTestDetector(t, DefaultConfig())
	full := readTraces(t, fxForwardsXRID)
	clients := subset(full, isKind(ptrace.SpanKindClient))
	servers := subset(full, isKind(ptrace.SpanKindServer))
	d.Process(clients)
	clk.advance(5 * time.Second)
	d.Process(servers)
	assert.Empty(t, links(clients))
	oB := refOf(findSpan(t, clients, orphanToDetails))
	oC := refOf(findSpan(t, clients, orphanToReviews))
	assert.ElementsMatch(t, []linkRef{
		{from: ppServer, to: oB, reason: LinkReasonRequestID},
		{from: ppServer, to: oC, reason: LinkReasonRequestID},
	}, links(servers), "the SERVER span, arriving second, carries a link to each orphan")
	assert.Equal(t, int64(2), reportFor(t, d, "productpage.default").Relinked)
}

func TestNoRelinkWithoutRequestIDContinuity(t *testing.T) {
	d, _ := newTestDetector(t, DefaultConfig())
	td := readTraces(t, fxNoPropagate)
	d.Process(td)
	assert.Len(t, flagged(td), 2)
	assert.Empty(t, links(td))
	rep := reportFor(t, d, "productpage.default")
	assert.Equal(t, DiagnosisNoHeaders, rep.Diagnosis)
}

func TestRelinkDisabled(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LinkByRequestID = false
	d, _ := newTestDetector(t, cfg)
	td := readTraces(t, fxForwardsXRID)
	d.Process(td)
	assert.Len(t, flagged(td), 2)
	assert.Empty(t, links(td))
	assert.Nil(t, d.index)
	assert.Equal(t, DiagnosisNoTraceparent, reportFor(t, d, "productpage.default").Diagnosis)
}

func TestRelinkNeverPairs(t *testing.T) {
	const trA, trB = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	tests := []struct {
		name  string
		build func(td ptrace.Traces)
	}{
		{
			name: "two spans of the same trace",
			build: func(td ptrace.Traces) {
				p := addProxy(td, "productpage.default")
				productpageServer(p, trA, "d000000000000001", "", "rid-1", 0, 100)
				productpageRoot(p, trA, "d000000000000002", "rid-1", 10)
			},
		},
		{
			name: "spans of different workloads",
			build: func(td ptrace.Traces) {
				addProxy(td, "details.default").add(spanOpts{trace: trA, span: "d000000000000003", kind: ptrace.SpanKindServer,
					nodeID: nodeDetails, upstreamCluster: "inbound|9080||", requestID: "rid-2", canonical: "details", ns: "default", end: 100})
				productpageRoot(addProxy(td, "productpage.default"), trB, "d000000000000004", "rid-2", 10)
			},
		},
		{
			name: "two pods of one workload",
			build: func(td ptrace.Traces) {
				p := addProxy(td, "productpage.default")
				p.add(spanOpts{trace: trA, span: "d000000000000005", kind: ptrace.SpanKindServer, nodeID: nodeProductpag2,
					upstreamCluster: "inbound|9080||", requestID: "rid-3", canonical: "productpage", ns: "default", end: 100})
				productpageRoot(p, trB, "d000000000000006", "rid-3", 10)
			},
		},
		{
			name: "different request ids",
			build: func(td ptrace.Traces) {
				p := addProxy(td, "productpage.default")
				productpageServer(p, trA, "d000000000000007", "", "rid-4", 0, 100)
				productpageRoot(p, trB, "d000000000000008", "rid-5", 10)
			},
		},
		{
			name: "a CLIENT span with a parent (not an orphan) and a SERVER span",
			build: func(td ptrace.Traces) {
				p := addProxy(td, "productpage.default")
				productpageServer(p, trA, "d000000000000009", "", "rid-6", 0, 100)
				p.add(spanOpts{trace: trB, span: "d00000000000000a", parent: "d00000000000000b", kind: ptrace.SpanKindClient,
					nodeID: nodeProductpage, upstreamCluster: "outbound|9080||details.default.svc.cluster.local",
					requestID: "rid-6", canonical: "productpage", ns: "default", start: 10})
			},
		},
		{
			name: "a gateway CLIENT root and a SERVER span",
			build: func(td ptrace.Traces) {
				addProxy(td, "istio-ingressgateway.istio-system").add(spanOpts{trace: trA, span: "d00000000000000c",
					kind: ptrace.SpanKindClient, nodeID: nodeGateway, upstreamCluster: "outbound|9080||productpage.default.svc.cluster.local",
					requestID: "rid-7", canonical: "istio-ingressgateway", ns: "istio-system"})
				productpageServer(addProxy(td, "productpage.default"), trB, "d00000000000000d", "", "rid-7", 0, 100)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// In one batch, and across batches in both orders.
			for _, order := range []string{"one batch", "server first", "orphan first"} {
				d, _ := newTestDetector(t, DefaultConfig())
				td := ptrace.NewTraces()
				tt.build(td)
				switch order {
				case "one batch":
					d.Process(td)
				case "server first":
					d.Process(subset(td, isKind(ptrace.SpanKindServer)))
					rest := subset(td, func(s ptrace.Span) bool { return s.Kind() != ptrace.SpanKindServer })
					d.Process(rest)
					td = rest
				case "orphan first":
					first := subset(td, func(s ptrace.Span) bool { return s.Kind() != ptrace.SpanKindServer })
					d.Process(first)
					second := subset(td, isKind(ptrace.SpanKindServer))
					d.Process(second)
					assert.Empty(t, links(first), order)
					td = second
				}
				assert.Empty(t, links(td), order)
				for _, r := range d.Report() {
					assert.Zero(t, r.Relinked, order)
				}
			}
		})
	}
}

// Retries give one workload several SERVER spans with the same request id;
// the orphan goes to the one whose time window contains its start.
func TestRelinkPicksTheContainingServerSpan(t *testing.T) {
	const trA, trA2, trB = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "abababababababababababababababab", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	d, _ := newTestDetector(t, DefaultConfig())
	td := ptrace.NewTraces()
	p := addProxy(td, "productpage.default")
	productpageServer(p, trA, "e000000000000001", "", "rid", 0, 50)     // first attempt
	productpageServer(p, trA2, "e000000000000002", "", "rid", 60, 200)  // retry
	productpageServer(p, trA2, "e000000000000003", "", "rid", 300, 400) // a later one
	productpageRoot(p, trB, "e000000000000004", "rid", 100)
	d.Process(td)
	assert.Equal(t, []linkRef{{from: "e000000000000004", to: spanRef{trA2, "e000000000000002"}, reason: LinkReasonRequestID}}, links(td))
}

func TestRelinkWindow(t *testing.T) {
	for _, tt := range []struct {
		after time.Duration
		link  bool
	}{{29 * time.Second, true}, {30 * time.Second, false}, {time.Minute, false}} {
		t.Run(tt.after.String(), func(t *testing.T) {
			d, clk := newTestDetector(t, DefaultConfig())
			td := ptrace.NewTraces()
			productpageServer(addProxy(td, "productpage.default"), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "f000000000000001", "", "rid", 0, 100)
			d.Process(td)
			clk.advance(tt.after)
			td2 := ptrace.NewTraces()
			productpageRoot(addProxy(td2, "productpage.default"), "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "f000000000000002", "rid", 10)
			d.Process(td2)
			assert.Equal(t, tt.link, len(links(td2)) == 1)
		})
	}
}

// serverBatch is one flush holding productpage's SERVER span for request i.
func serverBatch(i int) ptrace.Traces {
	td := ptrace.NewTraces()
	productpageServer(addProxy(td, "productpage.default"), fmt.Sprintf("a%031x", i), fmt.Sprintf("a%015x", i), "", fmt.Sprintf("rid-%d", i), 0, 100)
	return td
}

// orphanBatch is one flush holding productpage's orphan root for request i.
func orphanBatch(i int) ptrace.Traces {
	td := ptrace.NewTraces()
	productpageRoot(addProxy(td, "productpage.default"), fmt.Sprintf("b%031x", i), fmt.Sprintf("b%015x", i), fmt.Sprintf("rid-%d", i), 10)
	return td
}

func TestEvictionAtMaxTracked(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxTracked = 3
	d, clk := newTestDetector(t, cfg)
	for i := range 5 {
		d.Process(serverBatch(i))
		clk.advance(time.Millisecond)
	}
	assert.Equal(t, 3, d.index.len(), "never more than max_tracked")
	// The oldest two were evicted: their orphans find nothing. Newest first,
	// because an orphan with an unknown id takes a slot (and evicts) too.
	for i := 4; i >= 0; i-- {
		o := orphanBatch(i)
		d.Process(o)
		assert.Equal(t, i >= 2, len(links(o)) == 1, "request %d", i)
	}
	assert.Equal(t, 3, d.index.len())
}

func TestRelinkIsIdempotent(t *testing.T) {
	t.Run("same batch processed twice", func(t *testing.T) {
		d, _ := newTestDetector(t, DefaultConfig())
		td := readTraces(t, fxForwardsXRID)
		d.Process(td)
		once := ptrace.NewTraces()
		td.CopyTo(once)
		d.Process(td)
		require.NoError(t, ptracetest.CompareTraces(once, td))
		assert.Len(t, links(td), 2)
		assert.Equal(t, int64(2), reportFor(t, d, "productpage.default").Relinked, "a pair is counted once")
	})
	t.Run("a fresh copy of the same batch comes out the same", func(t *testing.T) {
		d, _ := newTestDetector(t, DefaultConfig())
		first := readTraces(t, fxForwardsXRID)
		d.Process(first)
		again := readTraces(t, fxForwardsXRID)
		d.Process(again)
		require.NoError(t, ptracetest.CompareTraces(first, again))
		assert.Equal(t, int64(2), reportFor(t, d, "productpage.default").Relinked)
	})
	t.Run("orphan first, then both batches again", func(t *testing.T) {
		d, _ := newTestDetector(t, DefaultConfig())
		full := readTraces(t, fxForwardsXRID)
		clients := subset(full, isKind(ptrace.SpanKindClient))
		servers := subset(full, isKind(ptrace.SpanKindServer))
		d.Process(clients)
		d.Process(servers)
		clients2 := subset(full, isKind(ptrace.SpanKindClient))
		servers2 := subset(full, isKind(ptrace.SpanKindServer))
		d.Process(clients2)
		d.Process(servers2)
		assert.Empty(t, links(clients2), "the SERVER span carries the pair's link; the orphan must not link back")
		require.NoError(t, ptracetest.CompareTraces(servers, servers2))
		assert.Equal(t, int64(2), reportFor(t, d, "productpage.default").Relinked)
	})
}

// Many proxies flush at once: the receiver calls Process from many
// goroutines. Each pair must be linked exactly once, from one side.
func TestRelinkConcurrentBatches(t *testing.T) {
	const pairs = 400
	d, _ := newTestDetector(t, DefaultConfig())
	batches := make([]ptrace.Traces, 0, 2*pairs)
	for i := range pairs {
		batches = append(batches, serverBatch(i), orphanBatch(i))
	}
	rand.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })

	var wg sync.WaitGroup
	work := make(chan ptrace.Traces)
	for range 8 {
		wg.Go(func() {
			for td := range work {
				d.Process(td)
			}
		})
	}
	for _, td := range batches {
		work <- td
	}
	close(work)
	wg.Wait()

	total := 0
	for _, td := range batches {
		total += len(links(td))
	}
	assert.Equal(t, pairs, total, "one link per pair")
	rep := reportFor(t, d, "productpage.default")
	assert.Equal(t, int64(pairs), rep.Relinked)
	assert.Equal(t, int64(pairs), rep.Orphans)
	assert.Equal(t, int64(pairs), rep.Outbound)
}

func reportFor(t *testing.T, d *Detector, service string) ServiceReport {
	t.Helper()
	for _, r := range d.Report() {
		if r.Service == service {
			return r
		}
	}
	t.Fatalf("no report line for %s in %+v", service, d.Report())
	return ServiceReport{}
}

// Spans already flagged and linked (the steady state of a re-sent batch) and
// healthy spans cost no allocation per span: the index, the report and the
// counters reuse what they have.
func TestSteadyStateAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	d, _ := newTestDetector(t, DefaultConfig())
	td := ptrace.NewTraces()
	for _, fx := range []string{fxPropagated, fxForwardsXRID, fxNoPropagate, fxSpawn, fxLegacy} {
		readTraces(t, fx).ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	}
	d.Process(td)
	allocs := testing.AllocsPerRun(50, func() { d.Process(td) })
	assert.Less(t, allocs, 1.0, "%d spans, %.1f allocations per batch", td.SpanCount(), allocs)
}
