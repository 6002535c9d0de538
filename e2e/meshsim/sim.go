package meshsim

import (
	"math/rand/v2"
	"sort"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Flush is one OTLP export of one proxy: a single ResourceSpans holding a
// single ScopeSpans, as Envoy's Tracer::flushSpans writes it.
type Flush struct {
	// Proxy is the pod whose proxy (or app SDK) sent it.
	Proxy  string
	Traces ptrace.Traces
}

// Stats counts what a Sim produced.
type Stats struct {
	// Requests is the number of Bookinfo page loads simulated.
	Requests int
	// Spans is the number of spans emitted (sampled); SampledOut the number
	// that sampling dropped.
	Spans, SampledOut int
	// Orphans is the number of emitted sidecar CLIENT spans without a parent:
	// the roots of the new traces that a broken traceparent hop starts.
	Orphans int
	// AppSpans is the number of emitted application SDK (non-Istio) spans.
	AppSpans int
	// Flushes is the number of exports.
	Flushes int
}

// Sim is the simulated mesh. It is not safe for concurrent use.
type Sim struct {
	cfg     Config
	minor   int
	ids     *ids
	rng     *rand.Rand
	proxies map[*workload]*proxy
	order   []*proxy // fixed iteration order for timer flushes
	app     *proxy   // productpage's SDK exporter, when AppSDKSpans
	stats   Stats
	pending []*hop
}

// proxy buffers one proxy's finished spans until a flush.
type proxy struct {
	w        *workload
	isApp    bool        // an application SDK exporter, not a proxy
	resource pcommon.Map // attributes every flush carries
	scope    pcommon.InstrumentationScope
	schema   string
	min      int
	cur      ptrace.Traces
	spans    ptrace.SpanSlice
	n        int
	next     time.Time // the next flush timer tick
}

// New builds a simulator; cfg must pass Validate.
func New(cfg Config) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sim{
		cfg:     cfg,
		minor:   cfg.minor(),
		ids:     newIDs(cfg.Seed),
		rng:     rand.New(rand.NewPCG(cfg.Seed+1, cfg.Seed^0x5851f42d4c957f2d)),
		proxies: map[*workload]*proxy{},
	}
	for _, w := range []*workload{gatewayWL, productpageWL, detailsWL, reviewsWL[0], reviewsWL[1], reviewsWL[2], ratingsWL} {
		p := s.newProxy(w)
		s.proxies[w] = p
		s.order = append(s.order, p)
	}
	if cfg.AppSDKSpans {
		s.app = s.newAppExporter()
	}
	return s, nil
}

// Stats returns the counts so far.
func (s *Sim) Stats() Stats { return s.stats }

func (s *Sim) newProxy(w *workload) *proxy {
	p := &proxy{w: w, resource: pcommon.NewMap(), scope: pcommon.NewInstrumentationScope(), min: s.cfg.MinFlushSpans}
	if s.minor >= 25 {
		v := envoyVersion(s.minor)
		p.resource.PutStr("telemetry.sdk.language", "cpp")
		p.resource.PutStr("telemetry.sdk.name", "envoy")
		p.resource.PutStr("telemetry.sdk.version", v)
		p.scope.SetName("envoy")
		p.scope.SetVersion(v)
	}
	mode := s.cfg.ModeOf(w.app)
	p.resource.PutStr("service.name", w.serviceName(mode))
	// OTEL_SEMANTIC_CONVENTIONS: the injector's OTEL_RESOURCE_ATTRIBUTES on
	// the sidecar; gateways are not injected and get none (§6.4).
	if mode == OTelSemanticConventions && !w.gateway {
		p.resource.PutStr("service.namespace", w.namespace)
		p.resource.PutStr("service.version", bookinfoImage)
		p.resource.PutStr("service.instance.id", w.namespace+"."+w.pod+"."+w.container)
	}
	return p
}

// newAppExporter is productpage's own OpenTelemetry Python SDK: a resource
// without istio tags, flushed by its batch span processor (512 spans or 5s).
func (s *Sim) newAppExporter() *proxy {
	p := &proxy{w: productpageWL, isApp: true, resource: pcommon.NewMap(), scope: pcommon.NewInstrumentationScope(),
		schema: "https://opentelemetry.io/schemas/1.26.0", min: 512}
	p.resource.PutStr("service.name", "productpage")
	p.resource.PutStr("telemetry.sdk.language", "python")
	p.resource.PutStr("telemetry.sdk.name", "opentelemetry")
	p.resource.PutStr("telemetry.sdk.version", "1.27.0")
	p.scope.SetName("opentelemetry.instrumentation.flask")
	p.scope.SetVersion("0.48b0")
	return p
}

// spanCtx is what travels with a request between proxies.
type spanCtx struct {
	trace   pcommon.TraceID
	span    pcommon.SpanID // the span whose context was injected
	sampled bool
	rid     []byte
	ua      string
}

// hop is one span before it is written into its proxy's buffer.
type hop struct {
	p          *proxy
	kind       ptrace.SpanKind
	router     bool // the gateway's spawn_upstream_span CLIENT child
	app        bool // the application SDK span
	name       string
	trace      pcommon.TraceID
	id, parent pcommon.SpanID
	sampled    bool
	rid        string
	ua         string
	start, end time.Time
	peer       string
	url        string
	cluster    string // upstream_cluster
	upstream   string // upstream_address (router span)
	respSize   string
}

// Request simulates one page load through the ingress gateway starting at
// start. It returns the exports that proxies make because their buffer
// reached MinFlushSpans.
func (s *Sim) Request(start time.Time) []Flush {
	s.stats.Requests++
	s.arm(start)
	s.pending = s.pending[:0]
	var reviews *workload
	switch s.cfg.ReviewsVersion {
	case "v1", "v2", "v3":
		reviews = reviewsWL[s.cfg.ReviewsVersion[1]-'1']
	default:
		reviews = reviewsWL[s.rng.IntN(3)]
	}
	callsRatings := reviews.version != "v1"
	d := s.drawDurations(callsRatings)

	// Durations bottom-up, so every span nests inside its parent.
	ratingsClient := d.ratingsServer + 2*hopGap
	reviewsServer := d.reviewsServer
	if callsRatings {
		reviewsServer += firstGap + ratingsClient
	}
	reviewsClient := reviewsServer + 2*hopGap
	detailsClient := d.detailsServer + 2*hopGap
	ppServer := firstGap + detailsClient + hopGap + reviewsClient + d.productpageWork
	gwSpan := ppServer + 2*hopGap

	// The gateway: a root (the client sends no traceparent), with a fresh
	// x-request-id (gateways run with use_remote_address: true).
	gw := s.proxies[gatewayWL]
	rid := s.ids.requestID()
	sampled := decideSampling(rid, s.cfg.SamplingPercent)
	root := spanCtx{trace: s.ids.traceID(), sampled: sampled, rid: rid, ua: clientUserAgent}
	url := "http://" + ingressHost + "/productpage"
	gwName := productpageWL.fqdn() + ":" + servicePort + "/productpage"
	if s.minor < 23 {
		gwName = "egress " + ingressHost
	}
	ppCluster := outbound(productpageWL)
	gwKind := ptrace.SpanKindClient
	if s.cfg.SpawnUpstreamSpan {
		gwKind = ptrace.SpanKindServer
	}
	gwHop := s.add(&hop{p: gw, kind: gwKind, name: gwName, start: start, end: start.Add(gwSpan),
		peer: clientIP, url: url, cluster: ppCluster, respSize: productpageWL.responseSize}, root)
	toPP := gwHop
	if s.cfg.SpawnUpstreamSpan {
		toPP = s.add(&hop{p: gw, kind: ptrace.SpanKindClient, router: true,
			name:  "router " + altStatName(ppCluster, s.minor) + " egress",
			start: start.Add(hopGap / 2), end: start.Add(gwSpan - hopGap/2),
			peer: productpageWL.ip + ":" + servicePort, upstream: productpageWL.ip + ":" + servicePort,
			cluster: ppCluster}, gwHop.ctx())
	}

	// productpage: inbound SERVER, then details, then reviews.
	ppStart := start.Add(hopGap)
	pp := s.server(productpageWL, toPP, gwName, gatewayWL.ip, url, ppStart, ppServer)
	t := ppStart.Add(firstGap)
	dc := s.client(productpageWL, detailsWL, pp, t, detailsClient, "/details/0")
	s.server(detailsWL, dc, s.clientName(detailsWL), productpageWL.ip, dc.url, t.Add(hopGap), d.detailsServer)
	t = t.Add(detailsClient + hopGap)
	rc := s.client(productpageWL, reviewsWL[0], pp, t, reviewsClient, "/reviews/0")
	rc.respSize = reviews.responseSize
	rs := s.server(reviews, rc, s.clientName(reviews), productpageWL.ip, rc.url, t.Add(hopGap), reviewsServer)
	if callsRatings {
		t := rs.start.Add(firstGap)
		rt := s.client(reviews, ratingsWL, rs, t, ratingsClient, "/ratings/0")
		s.server(ratingsWL, rt, s.clientName(ratingsWL), reviews.ip, rt.url, t.Add(hopGap), d.ratingsServer)
	}
	if s.app != nil && pp.sampled {
		s.pending = append(s.pending, &hop{p: s.app, app: true, kind: ptrace.SpanKindServer, name: "GET /productpage",
			trace: pp.trace, id: s.ids.spanID(), parent: pp.id, sampled: true,
			start: pp.start.Add(hopGap), end: pp.end.Add(-hopGap)})
	}

	// Proxies buffer spans as they end; write them in that order.
	sort.SliceStable(s.pending, func(i, j int) bool { return s.pending[i].end.Before(s.pending[j].end) })
	var out []Flush
	for _, h := range s.pending {
		if !h.sampled {
			s.stats.SampledOut++
			continue
		}
		s.stats.Spans++
		if h.app {
			s.stats.AppSpans++
		} else if h.kind == ptrace.SpanKindClient && h.parent.IsEmpty() && !h.p.w.gateway {
			s.stats.Orphans++
		}
		if f, ok := s.write(h); ok {
			out = append(out, f)
		}
	}
	return out
}

// add queues a span in the context of its parent (a root when the parent
// span id is empty) and returns it.
func (s *Sim) add(h *hop, parent spanCtx) *hop {
	h.trace, h.parent, h.sampled = parent.trace, parent.span, parent.sampled
	h.rid, h.ua = string(parent.rid), parent.ua
	h.id = s.ids.spanID()
	s.pending = append(s.pending, h)
	return h
}

func (h *hop) ctx() spanCtx {
	return spanCtx{trace: h.trace, span: h.id, sampled: h.sampled, rid: []byte(h.rid), ua: h.ua}
}

// clientName is the outbound CLIENT span's name, which the callee's inbound
// SERVER span also takes (through x-envoy-decorator-operation) since 1.23.
func (s *Sim) clientName(callee *workload) string {
	if s.minor < 23 {
		return "egress " + callee.app + ":" + servicePort
	}
	return callee.fqdn() + ":" + servicePort + "/*"
}

// server adds callee's inbound SERVER span for a call made by the caller
// span: the caller's sidecar always injects traceparent, so it is a child.
func (s *Sim) server(callee *workload, caller *hop, name, peer, url string, start time.Time, d time.Duration) *hop {
	if s.minor < 23 {
		name = "ingress"
	}
	return s.add(&hop{p: s.proxies[callee], kind: ptrace.SpanKindServer, name: name, start: start, end: start.Add(d),
		peer: peer, url: url, cluster: "inbound|" + servicePort + "||", respSize: callee.responseSize}, caller.ctx())
}

// client adds the caller's outbound CLIENT span. What the app forwarded from
// the inbound request (in) decides its context: no traceparent means a new
// trace with this span as its root; no x-request-id means the sidecar
// makes a new one, with its own sampling decision (§7).
func (s *Sim) client(caller, callee *workload, in *hop, start time.Time, d time.Duration, path string) *hop {
	app := caller.app
	ctx := in.ctx()
	if s.cfg.NoRequestID[app] {
		ctx.rid = s.ids.requestID()
	}
	decision := decideSampling(ctx.rid, s.cfg.SamplingPercent)
	if s.cfg.NoTraceContext[app] {
		ctx = spanCtx{trace: s.ids.traceID(), sampled: decision, rid: ctx.rid, ua: caller.userAgent}
	}
	return s.add(&hop{p: s.proxies[caller], kind: ptrace.SpanKindClient, name: s.clientName(callee),
		start: start, end: start.Add(d), peer: caller.ip, url: "http://" + callee.app + ":" + servicePort + path,
		cluster: outbound(callee), respSize: callee.responseSize}, ctx)
}

func outbound(w *workload) string { return "outbound|" + servicePort + "||" + w.fqdn() }

// altStatName is upstream_cluster.name: Istio's alt_stat_name, the cluster
// name plus ";" since 1.24.
func altStatName(cluster string, minor int) string {
	if minor >= 24 {
		return cluster + ";"
	}
	return cluster
}

// arm starts every proxy's flush timer at a random phase, once.
func (s *Sim) arm(now time.Time) {
	for _, p := range s.allProxies() {
		if p.next.IsZero() {
			p.next = now.Add(time.Duration(s.rng.Int64N(int64(s.cfg.FlushInterval))) + 1)
		}
	}
}

func (s *Sim) allProxies() []*proxy {
	if s.app == nil {
		return s.order
	}
	return append(s.order[:len(s.order):len(s.order)], s.app)
}

// Tick fires the flush timers due by now: each proxy exports whatever it
// holds every FlushInterval, whether or not it reached MinFlushSpans.
func (s *Sim) Tick(now time.Time) []Flush {
	s.arm(now)
	var out []Flush
	for _, p := range s.allProxies() {
		for !p.next.After(now) {
			if f, ok := s.flush(p); ok {
				out = append(out, f)
			}
			p.next = p.next.Add(s.cfg.FlushInterval)
		}
	}
	return out
}

// Drain exports everything still buffered, as proxies do on shutdown.
func (s *Sim) Drain() []Flush {
	var out []Flush
	for _, p := range s.allProxies() {
		if f, ok := s.flush(p); ok {
			out = append(out, f)
		}
	}
	return out
}

// write appends a span to its proxy's buffer and flushes when full.
func (s *Sim) write(h *hop) (Flush, bool) {
	p := h.p
	if p.n == 0 {
		p.cur = ptrace.NewTraces()
		rs := p.cur.ResourceSpans().AppendEmpty()
		p.resource.CopyTo(rs.Resource().Attributes())
		rs.SetSchemaUrl(p.schema)
		ss := rs.ScopeSpans().AppendEmpty()
		p.scope.CopyTo(ss.Scope())
		p.spans = ss.Spans()
	}
	s.fill(p.spans.AppendEmpty(), h)
	p.n++
	if p.n >= p.min {
		return s.flush(p)
	}
	return Flush{}, false
}

func (s *Sim) flush(p *proxy) (Flush, bool) {
	if p.n == 0 {
		return Flush{}, false
	}
	f := Flush{Proxy: p.w.pod, Traces: p.cur}
	if p.isApp {
		f.Proxy += "/app"
	}
	p.cur, p.spans, p.n = ptrace.Traces{}, ptrace.SpanSlice{}, 0
	s.stats.Flushes++
	return f, true
}
