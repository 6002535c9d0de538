package orphans

import (
	"context"
	"fmt"
	"hash/maphash"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
)

// Detector flags orphaned roots, re-links them by x-request-id and keeps the
// propagation report. It is safe for concurrent use by many batches.
type Detector struct {
	cfg      Config
	origins  originSet
	services *serviceRegistry
	index    *requestIndex // nil when link_by_request_id is off
	tel      *metadata.TelemetryBuilder

	now   func() time.Time
	epoch time.Time
	// Seeds for the request-id key and the workload identity: nodeSeed for
	// an identity taken from node_id, idSeed for the other forms.
	keySeed  maphash.Seed
	nodeSeed maphash.Seed
	idSeed   maphash.Seed

	batches sync.Pool // *Batch, reused so that a batch allocates nothing here
}

// Batch is one batch's pass of the rules, resource by resource: see
// Detector.Begin.
type Batch struct {
	d                *Detector
	now              time.Time
	sender           netip.Addr // the peer that sent the batch; zero if unknown
	servers, orphans []candidate
	pairs            []linked
}

// NewDetector validates cfg and builds a Detector whose instruments are
// registered on set.MeterProvider.
func NewDetector(cfg Config, set component.TelemetrySettings) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Detector{
		cfg:      cfg,
		origins:  newOriginSet(cfg.Origins),
		services: newServiceRegistry(MaxServices, ServiceIdle),
		now:      time.Now,
		keySeed:  maphash.MakeSeed(),
		nodeSeed: maphash.MakeSeed(),
		idSeed:   maphash.MakeSeed(),
	}
	d.epoch = d.now()
	d.batches.New = func() any { return &Batch{d: d} }
	var tracked func() int64
	if cfg.Enabled && cfg.LinkByRequestID {
		d.index = newRequestIndex(int64(cfg.Window), cfg.MaxTracked)
		tracked = func() int64 { return int64(d.index.len()) }
	}
	tel, err := newTelemetry(set, d.services, tracked)
	if err != nil {
		return nil, fmt.Errorf("orphans: creating telemetry: %w", err)
	}
	d.tel = tel
	return d, nil
}

// Shutdown unregisters the telemetry callback. Process must not be called
// after it.
func (d *Detector) Shutdown() {
	d.tel.Shutdown()
}

// Report returns the propagation report, one line per service that sent
// outbound CLIENT spans through a sidecar, culprits first.
func (d *Detector) Report() []ServiceReport {
	return d.services.snapshot(d.index != nil)
}

// Begin starts a batch: call Resource on each of its resources, in order,
// once that resource is normalised, then End. Going resource by resource
// lets the processor run both steps on a resource while its spans are
// still in the CPU cache. The batch's service slots are charged to the
// sender in ctx's client.Info. It returns nil when orphan detection is off.
func (d *Detector) Begin(ctx context.Context) *Batch {
	if !d.cfg.Enabled {
		return nil
	}
	b := d.batches.Get().(*Batch)
	b.now = d.now()
	b.sender = senderOf(client.FromContext(ctx).Addr)
	return b
}

// senderOf is the IP of a receiver's peer address (the port changes with
// every connection of one sender); the zero Addr when there is none.
func senderOf(addr net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := addr.(type) {
	case nil:
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.IPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr()
		} else {
			ip, _ = netip.ParseAddr(a.String())
		}
	}
	return ip.Unmap()
}

// Resource flags the orphaned roots of one resource and collects its
// re-link candidates.
func (b *Batch) Resource(rs ptrace.ResourceSpans) {
	d, now := b.d, b.now
	rv := resourceView{rs: rs}
	var outbound, orphans int64
	sss := rv.rs.ScopeSpans()
	for j := 0; j < sss.Len(); j++ {
		spans := sss.At(j).Spans()
		for k := 0; k < spans.Len(); k++ {
			span := spans.At(k)
			kind := span.Kind()
			if kind != ptrace.SpanKindClient && (kind != ptrace.SpanKindServer || d.index == nil) {
				continue
			}
			// Only an orphan root may need the tags beyond node_id and the
			// request id: for origins.
			root := span.ParentSpanID().IsEmpty()
			tags := readTags(span.Attributes(), root && kind == ptrace.SpanKindClient && !d.origins.empty(),
				kind == ptrace.SpanKindServer || root)
			if kind == ptrace.SpanKindServer {
				if fromSidecar(&tags, span, &rv, inboundClusterPrefix) {
					if c, ok := d.candidate(span, &tags, &rv, serverRecord); ok {
						b.servers = append(b.servers, c)
					}
				}
				continue
			}
			if !fromSidecar(&tags, span, &rv, outboundClusterPrefix) {
				continue
			}
			outbound++
			if !root || d.origins.match(&tags, &rv) {
				continue
			}
			markOrphan(span.Attributes())
			orphans++
			if c, ok := d.candidate(span, &tags, &rv, orphanRecord); ok {
				b.orphans = append(b.orphans, c)
			}
		}
	}
	if outbound == 0 {
		return
	}
	d.services.add(b.sender, rv.serviceName(), now.UnixNano(), outbound, orphans, 0)
}

// End re-links the batch's candidates and releases b, which must not be
// used afterwards.
func (b *Batch) End(ctx context.Context) {
	d, now := b.d, b.now
	defer func() {
		clear(b.servers)
		clear(b.orphans)
		clear(b.pairs)
		b.servers, b.orphans, b.pairs = b.servers[:0], b.orphans[:0], b.pairs[:0]
		d.batches.Put(b)
	}()
	if d.index == nil || (len(b.orphans) == 0 && len(b.servers) == 0) {
		return
	}
	var evicted int64
	b.pairs, evicted = d.index.link(b.servers, b.orphans, int64(now.Sub(d.epoch)), b.pairs)
	if evicted > 0 {
		d.tel.ProcessorIstioSpanRequestIdsEvicted.Add(ctx, evicted)
	}
	for _, p := range b.pairs {
		d.services.add(b.sender, p.service, now.UnixNano(), 0, 0, 1)
	}
}

// candidate reads what re-linking needs from span; false when re-linking is
// off or the span has no request id.
func (d *Detector) candidate(span ptrace.Span, t *spanTags, rv *resourceView, kind recordKind) (candidate, bool) {
	if d.index == nil {
		return candidate{}, false
	}
	rid := t.requestID.str()
	if rid == "" {
		return candidate{}, false
	}
	svc := rv.serviceName()
	return candidate{
		span: span,
		key:  d.requestKey(rid),
		rec: record{
			traceID:  span.TraceID(),
			spanID:   span.SpanID(),
			start:    span.StartTimestamp(),
			end:      span.EndTimestamp(),
			identity: d.identity(t, svc),
			kind:     kind,
		},
		service: svc,
	}, true
}

func (d *Detector) requestKey(rid string) requestKey {
	return requestKey(maphash.String(d.keySeed, rid))
}

// identity names the workload that emitted a span: the proxy's node_id (one
// pod: the app that received the SERVER request is the one that made the
// outbound call), else canonical service and namespace, else service.name.
func (d *Detector) identity(t *spanTags, svc string) uint64 {
	if id := t.nodeID.str(); id != "" {
		// The usual case, hashed in one call (~9 vs ~20 ns through
		// maphash.Hash); its own seed keeps it apart from the forms below,
		// as the "n" prefix did.
		return maphash.String(d.nodeSeed, id)
	}
	canonical, ns := t.canonical.str(), t.namespace.str()
	var h maphash.Hash
	h.SetSeed(d.idSeed)
	switch {
	case canonical != "" && ns != "":
		h.WriteString("w\x00")
		h.WriteString(canonical)
		h.WriteString("\x00")
		h.WriteString(ns)
	default:
		h.WriteString("s\x00")
		h.WriteString(svc)
	}
	return h.Sum64()
}
