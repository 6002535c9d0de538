package workload

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

func forEachSpan(td ptrace.Traces, fn func(ptrace.ResourceSpans, ptrace.Span)) {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			for k := 0; k < rs.ScopeSpans().At(j).Spans().Len(); k++ {
				fn(rs, rs.ScopeSpans().At(j).Spans().At(k))
			}
		}
	}
}

// Each kind is what its name says, and batches hold exactly what was asked.
func TestKinds(t *testing.T) {
	for _, m := range Mix {
		td, err := Batch(m.Kind, 1000, 3)
		if err != nil {
			t.Fatal(err)
		}
		if td.SpanCount() != 1000 {
			t.Fatalf("%s: %d spans, want 1000", m.Kind, td.SpanCount())
		}
		istio, orphans, renamed := 0, 0, 0
		forEachSpan(td, func(rs ptrace.ResourceSpans, s ptrace.Span) {
			c, ok := s.Attributes().Get("istio.canonical_service")
			if !ok {
				return
			}
			istio++
			ns, _ := s.Attributes().Get("istio.namespace")
			if name, _ := rs.Resource().Attributes().Get("service.name"); name.Str() != c.Str()+"."+ns.Str() {
				renamed++
			}
			if s.Kind() == ptrace.SpanKindClient && s.ParentSpanID().IsEmpty() {
				if node, _ := s.Attributes().Get("node_id"); node.Str()[:8] == "sidecar~" {
					orphans++
				}
			}
		})
		switch m.Kind {
		case NonIstio:
			if istio != 0 {
				t.Errorf("non_istio: %d Istio spans", istio)
			}
		case Renamed:
			if renamed != istio || istio != 1000 {
				t.Errorf("renamed: %d of %d Istio spans need a rename", renamed, istio)
			}
		case Normalised:
			if renamed != 0 || orphans != 0 {
				t.Errorf("normalised: %d need a rename, %d orphans", renamed, orphans)
			}
		case Orphans:
			if orphans == 0 || renamed != 0 {
				t.Errorf("orphans: %d orphans, %d need a rename", orphans, renamed)
			}
		}
	}
}

func TestMixed(t *testing.T) {
	td, err := Mixed(1000, 1)
	if err != nil {
		t.Fatal(err)
	}
	if td.SpanCount() != 1000 {
		t.Fatalf("%d spans, want 1000", td.SpanCount())
	}
	nonIstio := 0
	forEachSpan(td, func(_ ptrace.ResourceSpans, s ptrace.Span) {
		if _, ok := s.Attributes().Get("istio.canonical_service"); !ok {
			nonIstio++
		}
	})
	if nonIstio != 100 {
		t.Errorf("%d non-Istio spans, want 100", nonIstio)
	}
}
