package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// orphansTestdata holds the orphan detector's fixtures.
var orphansTestdata = filepath.Join(harness.RepoRoot(), "processor", "istiospanprocessor", "internal", "orphans", "testdata")

// In fixture 02x productpage forwards x-request-id but not traceparent:
// its two CLIENT roots are orphans of its SERVER span, in another trace.
const (
	ppServerSpan   = "87e7c5405cde9fbe"
	ppOrphanToDet  = "288ce221e446097c"
	ppOrphanToRev  = "69bada79a64698c3"
	fixtureRelinks = "02x-bookinfo-productpage-forwards-request-id-istio125.json"
)

// Spans sent over OTLP through the built binary in two requests, as Envoy's
// flushes would send them (orphans first, their SERVER span seconds later):
// the backend gets the two orphans flagged and the SERVER span carrying the
// links; the collector's metrics count them; the health_check extension's
// /status shows the report.
func TestOrphansEndToEnd(t *testing.T) {
	backend, col := startIstioSpan(t, "CANONICAL_NAME_AND_NAMESPACE")

	in := harness.ReadTraces(t, filepath.Join(orphansTestdata, fixtureRelinks))
	clients, servers := onlyKind(in, ptrace.SpanKindClient), onlyKind(in, ptrace.SpanKindServer)
	send := func(td ptrace.Traces) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := harness.SendGRPC(ctx, col.GRPCEndpoint, td); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	send(clients)
	backend.WaitForSpans(clients.SpanCount(), 10*time.Second)
	send(servers)
	backend.WaitForSpans(in.SpanCount(), 10*time.Second)

	got := backend.Traces()
	if n := got.SpanCount(); n != in.SpanCount() {
		t.Fatalf("backend has %d spans, want %d", n, in.SpanCount())
	}
	var flagged []string
	links := map[string][]string{}
	harness.EachSpan(got, func(_ ptrace.ResourceSpans, s ptrace.Span) {
		if v, ok := s.Attributes().Get("istio.orphan"); ok && v.Type() == pcommon.ValueTypeBool && v.Bool() {
			flagged = append(flagged, s.SpanID().String())
			if r, _ := s.Attributes().Get("istio.orphan.reason"); r.Str() != "missing_trace_context" {
				t.Errorf("span %s: istio.orphan.reason = %q", s.SpanID(), r.Str())
			}
		}
		for i := 0; i < s.Links().Len(); i++ {
			l := s.Links().At(i)
			if r, _ := l.Attributes().Get("istio.link.reason"); r.Str() != "x-request-id" {
				t.Errorf("link on %s: istio.link.reason = %q", s.SpanID(), r.Str())
			}
			links[s.SpanID().String()] = append(links[s.SpanID().String()], l.SpanID().String())
		}
	})
	if !sameSet(flagged, []string{ppOrphanToDet, ppOrphanToRev}) {
		t.Errorf("flagged spans = %v, want productpage's two CLIENT roots", flagged)
	}
	if len(links) != 1 || !sameSet(links[ppServerSpan], []string{ppOrphanToDet, ppOrphanToRev}) {
		t.Errorf("links = %v, want productpage's SERVER span (second to arrive) linking both orphans", links)
	}

	t.Run("metrics", func(t *testing.T) {
		body := get(t, "http://"+col.MetricsEndpoint+"/metrics")
		for _, re := range []string{
			`otelcol_processor_istio_span_orphans(_total)?\{[^}]*istio_service="productpage\.default"[^}]*\} 2\b`,
			`otelcol_processor_istio_span_relinked_pairs(_total)?\{[^}]*istio_service="productpage\.default"[^}]*\} 2\b`,
		} {
			if !regexp.MustCompile(re).MatchString(body) {
				t.Errorf("metrics do not match %s:\n%s", re, grepLines(body, "istio_span"))
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		resp, err := http.Get("http://" + col.HealthEndpoint + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/status answered %d: %s", resp.StatusCode, b)
		}
		var status struct {
			Propagation []struct {
				Service   string `json:"service"`
				Outbound  int64  `json:"outbound"`
				Orphans   int64  `json:"orphans"`
				Relinked  int64  `json:"relinked"`
				Diagnosis string `json:"diagnosis"`
			} `json:"propagation"`
		}
		if err := json.Unmarshal(b, &status); err != nil {
			t.Fatalf("/status: %v\n%s", err, b)
		}
		if len(status.Propagation) == 0 {
			t.Fatalf("/status has no propagation report:\n%s", b)
		}
		pp := status.Propagation[0]
		if pp.Service != "productpage.default" || pp.Outbound != 2 || pp.Orphans != 2 || pp.Relinked != 2 ||
			pp.Diagnosis != "forwards x-request-id but not traceparent (B3-only or no W3C propagation?)" {
			t.Errorf("first propagation line = %+v", pp)
		}
	})
}

func onlyKind(td ptrace.Traces, kind ptrace.SpanKind) ptrace.Traces {
	out := ptrace.NewTraces()
	td.CopyTo(out)
	out.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			ss.Spans().RemoveIf(func(s ptrace.Span) bool { return s.Kind() != kind })
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
		if seen[s] < 0 {
			return false
		}
	}
	return true
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grepLines(s, substr string) string {
	var out strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out.WriteString(l + "\n")
		}
	}
	return out.String()
}
