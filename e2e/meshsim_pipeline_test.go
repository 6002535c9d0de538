package e2e

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
	"github.com/otelcol-istio/otelcol-istio/e2e/meshsim"
)

// Simulated Bookinfo traffic through the built collector: every proxy's
// resource arrives under its workload's one name, the orphans istio_span
// flags are exactly the CLIENT roots the simulator made where propagation
// broke, and only those whose app forwarded x-request-id are linked to the
// request they came from.
func TestMeshsimThroughIstioSpan(t *testing.T) {
	backend, col := startIstioSpan(t, "CANONICAL_NAME_AND_NAMESPACE")
	cfg := meshsim.DefaultConfig()
	cfg.IstioVersion = "1.30"
	cfg.Modes = map[string]meshsim.Mode{
		"istio-ingressgateway": meshsim.CanonicalNameOnly,
		"productpage":          meshsim.OTelSemanticConventions,
		"reviews":              meshsim.CanonicalNameOnly,
	}
	cfg.NoTraceContext = map[string]bool{"productpage": true, "reviews": true} // both drop traceparent
	cfg.NoRequestID = map[string]bool{"reviews": true}                         // only reviews drops x-request-id
	sim, err := meshsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	send, err := meshsim.NewSender("grpc", col.GRPCEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()

	// What was sent: the orphan roots, by who sent them.
	orphanOf := map[pcommon.SpanID]string{}
	start := time.Now().Add(-time.Minute)
	var flushes []meshsim.Flush
	for i := range 30 {
		flushes = append(flushes, sim.Request(start.Add(time.Duration(i)*50*time.Millisecond))...)
	}
	flushes = append(flushes, sim.Drain()...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, f := range flushes {
		harness.EachSpan(f.Traces, func(_ ptrace.ResourceSpans, s ptrace.Span) {
			if s.Kind() == ptrace.SpanKindClient && s.ParentSpanID().IsEmpty() {
				c, _ := s.Attributes().Get("istio.canonical_service")
				if c.Str() != "istio-ingressgateway" {
					orphanOf[s.SpanID()] = c.Str()
				}
			}
		})
		if err := send.Send(ctx, f.Traces); err != nil {
			t.Fatal(err)
		}
	}
	st := sim.Stats()
	if len(orphanOf) != st.Orphans || st.Orphans == 0 {
		t.Fatalf("sent %d CLIENT roots, simulator counts %d orphans", len(orphanOf), st.Orphans)
	}
	backend.WaitForSpans(st.Spans, 20*time.Second)
	got := backend.Traces()

	byID := map[pcommon.SpanID]ptrace.Span{}
	harness.EachSpan(got, func(rs ptrace.ResourceSpans, s ptrace.Span) {
		byID[s.SpanID()] = s
		c, _ := s.Attributes().Get("istio.canonical_service")
		n, _ := s.Attributes().Get("istio.namespace")
		if name, _ := rs.Resource().Attributes().Get("service.name"); name.Str() != c.Str()+"."+n.Str() {
			t.Errorf("span of %s.%s arrived under service.name %q", c.Str(), n.Str(), name.Str())
		}
	})
	flagged := 0
	for id, s := range byID {
		o, ok := s.Attributes().Get("istio.orphan")
		marked := ok && o.AsString() == "true" // a bool attribute; its string form reads the same
		app, isOrphan := orphanOf[id]
		if marked != isOrphan {
			t.Errorf("span %s (%s): istio.orphan set=%v, sent as an orphan root: %v", s.Name(), id, marked, isOrphan)
			continue
		}
		if !isOrphan {
			continue
		}
		flagged++
		if r, _ := s.Attributes().Get("istio.orphan.reason"); r.Str() != "missing_trace_context" {
			t.Errorf("orphan %s: istio.orphan.reason=%q", id, r.Str())
		}
		linked := linkedToServer(s, byID)
		if want := app == "productpage"; linked != want {
			t.Errorf("orphan of %s linked to the SERVER span of its request: %v, want %v", app, linked, want)
		}
	}
	if flagged != st.Orphans {
		t.Errorf("%d orphans flagged, %d sent", flagged, st.Orphans)
	}
}

// linkedToServer says whether the orphan and a SERVER span of the same
// workload with the same x-request-id are joined by an x-request-id link,
// whichever of the two carries it.
func linkedToServer(orphan ptrace.Span, byID map[pcommon.SpanID]ptrace.Span) bool {
	rid, _ := orphan.Attributes().Get("guid:x-request-id")
	node, _ := orphan.Attributes().Get("node_id")
	partner := func(s ptrace.Span) bool {
		r, _ := s.Attributes().Get("guid:x-request-id")
		n, _ := s.Attributes().Get("node_id")
		return s.Kind() == ptrace.SpanKindServer && r.Str() == rid.Str() && n.Str() == node.Str() && s.TraceID() != orphan.TraceID()
	}
	isReqIDLink := func(l ptrace.SpanLink) bool {
		reason, _ := l.Attributes().Get("istio.link.reason")
		return reason.Str() == "x-request-id"
	}
	for i := 0; i < orphan.Links().Len(); i++ {
		if l := orphan.Links().At(i); isReqIDLink(l) {
			if s, ok := byID[l.SpanID()]; ok && partner(s) {
				return true
			}
		}
	}
	for _, s := range byID {
		if !partner(s) {
			continue
		}
		for i := 0; i < s.Links().Len(); i++ {
			if l := s.Links().At(i); isReqIDLink(l) && l.SpanID() == orphan.SpanID() {
				return true
			}
		}
	}
	return false
}
