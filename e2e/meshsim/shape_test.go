package meshsim

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// span is one span with its resource and scope, for shape comparisons.
type span struct {
	res    pcommon.Resource
	schema string
	scope  pcommon.InstrumentationScope
	ptrace.Span
}

// sig names a span within one Bookinfo request: the emitting proxy (its
// service.name and node_id, or the router span's cluster), kind and name.
// It is unique per request in every shape.
func (s span) sig() string {
	svc, _ := s.res.Attributes().Get("service.name")
	who := "router-of-" + svc.AsString()
	if node, ok := s.Attributes().Get("node_id"); ok {
		who = node.AsString()
	}
	return fmt.Sprintf("%s|%s|%s|%s", svc.AsString(), who, s.Kind(), s.Name())
}

func flatten(td ptrace.Traces) []span {
	var out []span
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j)
			for k := 0; k < ss.Spans().Len(); k++ {
				out = append(out, span{res: rs.Resource(), schema: rs.SchemaUrl(), scope: ss.Scope(), Span: ss.Spans().At(k)})
			}
		}
	}
	return out
}

func readFixture(t *testing.T, name string) ptrace.Traces {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(raw)
	if err != nil {
		t.Fatal(err)
	}
	return td
}

// simulate runs one request through a fresh simulator and returns every
// flush, with the proxies drained.
func simulate(t *testing.T, cfg Config, requests int) ([]Flush, *Sim) {
	t.Helper()
	sim, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out []Flush
	for i := range requests {
		out = append(out, sim.Request(start.Add(time.Duration(i)*100*time.Millisecond))...)
	}
	return append(out, sim.Drain()...), sim
}

func merge(fs []Flush) ptrace.Traces {
	td := ptrace.NewTraces()
	for _, f := range fs {
		f.Traces.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	}
	return td
}

// The simulator's spans have the fixtures' shapes: for every fixture span
// there is a simulated span with the same proxy, kind and name, the same
// resource attributes and scope, the same attribute keys in the same order
// with the same values (all strings; only the ids differ), the same parent
// (or none), the same trace grouping and the same x-request-id grouping.
// Spans the fixture lacks are only details' hop, which 04 and 08 leave out.
func TestShapesMatchFixtures(t *testing.T) {
	cases := []struct {
		fixture string
		cfg     func(*Config)
		// extra are the simulated signatures the fixture leaves out.
		extra []string
	}{
		{fixture: "01-bookinfo-propagated-app-label-ns-istio125.json", cfg: func(*Config) {}},
		{fixture: "02-bookinfo-productpage-no-propagation-istio125.json", cfg: func(c *Config) {
			c.NoTraceContext["productpage"] = true
			c.NoRequestID["productpage"] = true
		}},
		{fixture: "04-bookinfo-gateway-spawn-upstream-span-istio129.json", cfg: func(c *Config) {
			c.IstioVersion = "1.29"
			c.SpawnUpstreamSpan = true
		}, extra: []string{"details.default.svc.cluster.local:9080/*", "details.default.svc.cluster.local:9080/*"}},
		{fixture: "08-bookinfo-legacy-span-names-istio122.json", cfg: func(c *Config) {
			c.IstioVersion = "1.22"
		}, extra: []string{"egress details:9080", "ingress"}},
	}
	for _, tc := range cases {
		t.Run(tc.fixture, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ReviewsVersion = "v2" // the fixtures' request goes to reviews-v2
			tc.cfg(&cfg)
			want := flatten(readFixture(t, tc.fixture))
			flushes, sim := simulate(t, cfg, 1)
			got := flatten(merge(flushes))

			bySig := map[string]span{}
			for _, s := range got {
				if _, dup := bySig[s.sig()]; dup {
					t.Fatalf("two simulated spans with signature %s", s.sig())
				}
				bySig[s.sig()] = s
			}
			match := map[pcommon.SpanID]span{} // fixture span id -> simulated span
			for _, w := range want {
				g, ok := bySig[w.sig()]
				if !ok {
					t.Fatalf("no simulated span like fixture span %s; have %v", w.sig(), keys(bySig))
				}
				match[w.SpanID()] = g
				delete(bySig, w.sig())
			}
			var extra []string
			for _, s := range bySig {
				extra = append(extra, s.Name())
			}
			slices.Sort(extra)
			if !slices.Equal(extra, tc.extra) {
				t.Errorf("simulated spans the fixture does not have: %v, want %v", extra, tc.extra)
			}

			for _, w := range want {
				g := match[w.SpanID()]
				where := w.sig()
				if diff := attrDiff(w.res.Attributes(), g.res.Attributes(), nil); diff != "" {
					t.Errorf("%s: resource: %s", where, diff)
				}
				if w.scope.Name() != g.scope.Name() || w.scope.Version() != g.scope.Version() || w.schema != g.schema {
					t.Errorf("%s: scope %q/%q schema %q, want %q/%q %q", where, g.scope.Name(), g.scope.Version(), g.schema,
						w.scope.Name(), w.scope.Version(), w.schema)
				}
				if diff := attrDiff(w.Attributes(), g.Attributes(), []string{"guid:x-request-id"}); diff != "" {
					t.Errorf("%s: span attributes: %s", where, diff)
				}
				assertEnvoyBasics(t, g)
				// Parent links: the simulated parent is the match of the fixture's parent.
				switch {
				case w.ParentSpanID().IsEmpty() != g.ParentSpanID().IsEmpty():
					t.Errorf("%s: root=%v, want root=%v", where, g.ParentSpanID().IsEmpty(), w.ParentSpanID().IsEmpty())
				case !w.ParentSpanID().IsEmpty() && match[w.ParentSpanID()].SpanID() != g.ParentSpanID():
					t.Errorf("%s: parent is not the match of the fixture's parent %s", where, match[w.ParentSpanID()].sig())
				}
			}
			// Trace and x-request-id groupings agree pair by pair.
			for _, a := range want {
				for _, b := range want {
					ga, gb := match[a.SpanID()], match[b.SpanID()]
					if (a.TraceID() == b.TraceID()) != (ga.TraceID() == gb.TraceID()) {
						t.Errorf("%s and %s: same trace=%v, want %v", a.sig(), b.sig(), ga.TraceID() == gb.TraceID(), a.TraceID() == b.TraceID())
					}
					if (rid(a) == rid(b)) != (rid(ga) == rid(gb)) {
						t.Errorf("%s and %s: same x-request-id=%v, want %v", a.sig(), b.sig(), rid(ga) == rid(gb), rid(a) == rid(b))
					}
				}
			}
			// Orphans are exactly the CLIENT roots of sidecars.
			wantOrphans := 0
			for _, w := range want {
				if isOrphan(w) {
					wantOrphans++
				}
			}
			if got := sim.Stats().Orphans; got != wantOrphans {
				t.Errorf("orphans: %d, want %d", got, wantOrphans)
			}
		})
	}
}

func keys(m map[string]span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func rid(s span) string {
	if v, ok := s.Attributes().Get("guid:x-request-id"); ok {
		return v.AsString()
	}
	return ""
}

func isOrphan(s span) bool {
	node, ok := s.Attributes().Get("node_id")
	return ok && s.Kind() == ptrace.SpanKindClient && s.ParentSpanID().IsEmpty() && strings.HasPrefix(node.AsString(), "sidecar~")
}

// attrDiff compares two attribute maps: same keys in the same order, the
// same types and, except for the keys in ignore, the same values.
func attrDiff(want, got pcommon.Map, ignoreValues []string) string {
	var wk, gk []string
	want.Range(func(k string, _ pcommon.Value) bool { wk = append(wk, k); return true })
	got.Range(func(k string, _ pcommon.Value) bool { gk = append(gk, k); return true })
	if !slices.Equal(wk, gk) {
		return fmt.Sprintf("keys %v, want %v", gk, wk)
	}
	for _, k := range wk {
		w, _ := want.Get(k)
		g, _ := got.Get(k)
		if w.Type() != g.Type() {
			return fmt.Sprintf("%s is %s, want %s", k, g.Type(), w.Type())
		}
		if !slices.Contains(ignoreValues, k) && !w.Equal(g) {
			return fmt.Sprintf("%s=%q, want %q", k, g.AsString(), w.AsString())
		}
	}
	return ""
}

// assertEnvoyBasics checks what holds for every Envoy span: string
// attributes, unset status, no events, links, flags or trace state, and a
// sampled x-request-id when there is one.
func assertEnvoyBasics(t *testing.T, s span) {
	t.Helper()
	s.Attributes().Range(func(k string, v pcommon.Value) bool {
		if v.Type() != pcommon.ValueTypeStr {
			t.Errorf("%s: %s is %s, Envoy sends only strings", s.sig(), k, v.Type())
		}
		return true
	})
	if s.Status().Code() != ptrace.StatusCodeUnset || s.Events().Len() != 0 || s.Links().Len() != 0 ||
		s.Flags() != 0 || s.TraceState().AsRaw() != "" {
		t.Errorf("%s: status, events, links, flags or trace state set", s.sig())
	}
	if s.StartTimestamp() >= s.EndTimestamp() {
		t.Errorf("%s: ends before it starts", s.sig())
	}
	if r := rid(s); r != "" && (len(r) != 36 || r[14] != '9') {
		t.Errorf("%s: x-request-id %q is not a sampled UUID", s.sig(), r)
	}
}
