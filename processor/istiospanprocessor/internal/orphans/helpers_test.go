package orphans

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Fixture files (see testdata/README.md).
const (
	fxPropagated   = "01-bookinfo-propagated-app-label-ns-istio125.json"
	fxNoPropagate  = "02-bookinfo-productpage-no-propagation-istio125.json"
	fxForwardsXRID = "02x-bookinfo-productpage-forwards-request-id-istio125.json"
	fxSpawn        = "04-bookinfo-gateway-spawn-upstream-span-istio129.json"
	fxLegacy       = "08-bookinfo-legacy-span-names-istio122.json"
)

func readTraces(t testing.TB, path string) ptrace.Traces {
	t.Helper()
	td, err := golden.ReadTraces(filepath.Join("testdata", path))
	require.NoError(t, err)
	return td
}

// fakeClock is a settable clock for window tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestDetector builds a detector on a nop telemetry with a fake clock.
func newTestDetector(t testing.TB, cfg Config) (*Detector, *fakeClock) {
	t.Helper()
	return newTestDetectorWith(t, cfg, componenttest.NewNopTelemetrySettings())
}

func newTestDetectorWith(t testing.TB, cfg Config, set component.TelemetrySettings) (*Detector, *fakeClock) {
	t.Helper()
	d, err := NewDetector(cfg, set)
	require.NoError(t, err)
	t.Cleanup(d.Shutdown)
	clk := &fakeClock{t: time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)}
	d.now = clk.now
	d.epoch = clk.now()
	return d, clk
}

// spanRef names a span for assertions: its trace and span ids in hex.
type spanRef struct{ trace, span string }

func refOf(s ptrace.Span) spanRef {
	tid, sid := s.TraceID(), s.SpanID()
	return spanRef{hex.EncodeToString(tid[:]), hex.EncodeToString(sid[:])}
}

func allSpans(td ptrace.Traces) []ptrace.Span {
	var out []ptrace.Span
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				out = append(out, spans.At(k))
			}
		}
	}
	return out
}

func findSpan(t testing.TB, td ptrace.Traces, spanHex string) ptrace.Span {
	t.Helper()
	for _, s := range allSpans(td) {
		if refOf(s).span == spanHex {
			return s
		}
	}
	t.Fatalf("span %s not found", spanHex)
	return ptrace.Span{}
}

// flagged lists the spans carrying istio.orphan=true.
func flagged(td ptrace.Traces) []string {
	var out []string
	for _, s := range allSpans(td) {
		if v, ok := s.Attributes().Get(AttrOrphan); ok && v.Type() == pcommon.ValueTypeBool && v.Bool() {
			out = append(out, refOf(s).span)
		}
	}
	return out
}

// linkRef is one span link: from span -> (trace, span).
type linkRef struct {
	from   string
	to     spanRef
	reason string
}

func links(td ptrace.Traces) []linkRef {
	var out []linkRef
	for _, s := range allSpans(td) {
		ls := s.Links()
		for i := 0; i < ls.Len(); i++ {
			l := ls.At(i)
			tid, sid := l.TraceID(), l.SpanID()
			r, _ := l.Attributes().Get(AttrLinkReason)
			out = append(out, linkRef{
				from:   refOf(s).span,
				to:     spanRef{hex.EncodeToString(tid[:]), hex.EncodeToString(sid[:])},
				reason: r.AsString(),
			})
		}
	}
	return out
}

// subset copies td keeping only the spans keep accepts (and the resources
// and scopes that still hold spans): one fixture cut into proxy flushes.
func subset(td ptrace.Traces, keep func(ptrace.Span) bool) ptrace.Traces {
	out := ptrace.NewTraces()
	td.CopyTo(out)
	out.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			ss.Spans().RemoveIf(func(s ptrace.Span) bool { return !keep(s) })
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
	return out
}

func isKind(k ptrace.SpanKind) func(ptrace.Span) bool {
	return func(s ptrace.Span) bool { return s.Kind() == k }
}

// --- Builders for hand-made Istio-shaped spans (shapes from istio-tracing.md) ---

// proxy is one Envoy flush: a resource with one scope.
type proxy struct {
	spans ptrace.SpanSlice
	res   pcommon.Map
}

func addProxy(td ptrace.Traces, serviceName string) proxy {
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", serviceName)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("envoy")
	return proxy{spans: ss.Spans(), res: rs.Resource().Attributes()}
}

func tid(s string) pcommon.TraceID {
	var id pcommon.TraceID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		panic("bad trace id " + s)
	}
	copy(id[:], b)
	return id
}

func sid(s string) pcommon.SpanID {
	var id pcommon.SpanID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 8 {
		panic("bad span id " + s)
	}
	copy(id[:], b)
	return id
}

// spanOpts describes one hand-made span. Empty strings mean "absent".
type spanOpts struct {
	trace, span, parent string
	kind                ptrace.SpanKind
	name                string
	nodeID              string
	upstreamCluster     string
	requestID           string
	canonical, ns       string
	start, end          int64 // ns offsets from a fixed base
}

const baseTime = int64(1_779_000_000_000_000_000)

func (p proxy) add(o spanOpts) ptrace.Span {
	s := p.spans.AppendEmpty()
	s.SetTraceID(tid(o.trace))
	s.SetSpanID(sid(o.span))
	if o.parent != "" {
		s.SetParentSpanID(sid(o.parent))
	}
	s.SetKind(o.kind)
	s.SetName(o.name)
	if o.end == 0 {
		o.end = o.start + 1_000_000
	}
	s.SetStartTimestamp(pcommon.Timestamp(baseTime + o.start))
	s.SetEndTimestamp(pcommon.Timestamp(baseTime + o.end))
	a := s.Attributes()
	for k, v := range map[string]string{
		"node_id":                 o.nodeID,
		"upstream_cluster":        o.upstreamCluster,
		"guid:x-request-id":       o.requestID,
		"istio.canonical_service": o.canonical,
		"istio.namespace":         o.ns,
	} {
		if v != "" {
			a.PutStr(k, v)
		}
	}
	a.PutStr("component", "proxy")
	return s
}

const (
	nodeProductpage = "sidecar~10.244.0.25~productpage-v1-54bb8c4f7-xk2lp.default~default.svc.cluster.local"
	nodeProductpag2 = "sidecar~10.244.0.26~productpage-v1-54bb8c4f7-q9zzt.default~default.svc.cluster.local"
	nodeDetails     = "sidecar~10.244.0.21~details-v1-65cfcf56f9-4d7wq.default~default.svc.cluster.local"
	nodeGateway     = "router~10.244.0.14~istio-ingressgateway-5d8c6f9c7b-abcde.istio-system~istio-system.svc.cluster.local"
	nodeLoadgen     = "sidecar~10.244.0.40~loadgen-7f9c8d-zzzzz.tools~tools.svc.cluster.local"
)

// productpageServer is productpage's inbound SERVER span of trace tr.
func productpageServer(p proxy, tr, span, parent, rid string, start, end int64) ptrace.Span {
	return p.add(spanOpts{trace: tr, span: span, parent: parent, kind: ptrace.SpanKindServer,
		name: "productpage.default.svc.cluster.local:9080/productpage", nodeID: nodeProductpage,
		upstreamCluster: "inbound|9080||", requestID: rid, canonical: "productpage", ns: "default",
		start: start, end: end})
}

// productpageRoot is a CLIENT span with no parent from productpage's sidecar:
// the shape an app that drops traceparent leaves.
func productpageRoot(p proxy, tr, span, rid string, start int64) ptrace.Span {
	return p.add(spanOpts{trace: tr, span: span, kind: ptrace.SpanKindClient,
		name: "details.default.svc.cluster.local:9080/*", nodeID: nodeProductpage,
		upstreamCluster: "outbound|9080||details.default.svc.cluster.local", requestID: rid,
		canonical: "productpage", ns: "default", start: start})
}

// Process runs the rules on td in place, as the processor does resource by
// resource after name normalisation (so the resource service.name it reads
// is the normalised name).
func (d *Detector) Process(td ptrace.Traces) {
	d.ProcessFrom(context.Background(), td)
}

// ProcessFrom is Process for a batch received in ctx (its client.Info names
// the sender).
func (d *Detector) ProcessFrom(ctx context.Context, td ptrace.Traces) {
	b := d.Begin(ctx)
	if b == nil {
		return
	}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		b.Resource(rss.At(i))
	}
	b.End(ctx)
}
