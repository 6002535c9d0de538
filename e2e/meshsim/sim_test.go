package meshsim

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// service.name and the extra resource attributes per mode follow the
// Bookinfo cheat-sheet of istio-tracing.md §6.5 and §6.4.
func TestServiceNamePerMode(t *testing.T) {
	want := map[Mode]map[string]string{
		AppLabelAndNamespace: {"istio-ingressgateway-6b8f4d7c9d-q2x7v": "istio-ingressgateway.istio-system",
			"productpage-v1-54bb874995-7xk2m": "productpage.default", "reviews-v2-64776cb9bd-vw4kc": "reviews.default"},
		CanonicalNameOnly: {"istio-ingressgateway-6b8f4d7c9d-q2x7v": "istio-ingressgateway",
			"productpage-v1-54bb874995-7xk2m": "productpage", "reviews-v2-64776cb9bd-vw4kc": "reviews"},
		CanonicalNameAndNamespace: {"istio-ingressgateway-6b8f4d7c9d-q2x7v": "istio-ingressgateway.istio-system",
			"productpage-v1-54bb874995-7xk2m": "productpage.default", "reviews-v2-64776cb9bd-vw4kc": "reviews.default"},
		OTelSemanticConventions: {"istio-ingressgateway-6b8f4d7c9d-q2x7v": "istio-ingressgateway",
			"productpage-v1-54bb874995-7xk2m": "productpage-v1", "reviews-v2-64776cb9bd-vw4kc": "reviews-v2"},
	}
	for mode, names := range want {
		t.Run(string(mode), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.IstioVersion = "1.30"
			cfg.DefaultMode = mode
			cfg.ReviewsVersion = "v2"
			flushes, _ := simulate(t, cfg, 1)
			seen := 0
			for _, f := range flushes {
				res := f.Traces.ResourceSpans().At(0).Resource().Attributes()
				name, _ := res.Get("service.name")
				if w, ok := names[f.Proxy]; ok {
					seen++
					if name.Str() != w {
						t.Errorf("%s: service.name %q, want %q", f.Proxy, name.Str(), w)
					}
				}
				_, hasNS := res.Get("service.namespace")
				sidecar := !strings.HasPrefix(f.Proxy, "istio-ingressgateway")
				if wantNS := mode == OTelSemanticConventions && sidecar; hasNS != wantNS {
					t.Errorf("%s: service.namespace present=%v, want %v", f.Proxy, hasNS, wantNS)
				}
				if mode == OTelSemanticConventions && sidecar {
					v, _ := res.Get("service.version")
					id, _ := res.Get("service.instance.id")
					if v.Str() != "1.20.3" || !strings.HasPrefix(id.Str(), "default."+f.Proxy+".") {
						t.Errorf("%s: service.version %q, service.instance.id %q", f.Proxy, v.Str(), id.Str())
					}
				}
			}
			if seen != len(names) {
				t.Errorf("saw %d of the %d proxies", seen, len(names))
			}
		})
	}
}

// Modes can differ per app, as in a mesh mid-upgrade.
func TestModePerApp(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IstioVersion = "1.30"
	cfg.Modes = map[string]Mode{"productpage": OTelSemanticConventions, "ratings": CanonicalNameOnly}
	cfg.ReviewsVersion = "v3"
	flushes, _ := simulate(t, cfg, 1)
	got := map[string]string{}
	for _, f := range flushes {
		name, _ := f.Traces.ResourceSpans().At(0).Resource().Attributes().Get("service.name")
		got[f.Proxy] = name.Str()
	}
	for pod, want := range map[string]string{
		"productpage-v1-54bb874995-7xk2m": "productpage-v1", "ratings-v1-5d5bf9d7d8-jx9rl": "ratings",
		"reviews-v3-5b9b8c7c6f-2gq8n": "reviews.default", "details-v1-65cfcf56f9-d8n2p": "details.default",
	} {
		if got[pod] != want {
			t.Errorf("%s: %q, want %q", pod, got[pod], want)
		}
	}
}

// Envoy flushes every MinFlushSpans spans, and on its timer whatever it
// holds; each flush is one ResourceSpans with one ScopeSpans of one proxy.
func TestFlushes(t *testing.T) {
	cfg := DefaultConfig()
	sim, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var flushes []Flush
	for i := range 100 {
		flushes = append(flushes, sim.Request(start.Add(time.Duration(i)*10*time.Millisecond))...)
	}
	if len(flushes) == 0 {
		t.Fatal("no count-triggered flush after 100 requests")
	}
	for _, f := range flushes {
		if n := f.Traces.SpanCount(); n != cfg.MinFlushSpans {
			t.Errorf("%s: count flush of %d spans, want %d", f.Proxy, n, cfg.MinFlushSpans)
		}
	}
	// Within the interval no timer fires; after it, each proxy with spans flushes once.
	if got := sim.Tick(start); len(got) != 0 {
		t.Errorf("timer flushed %d times at the start", len(got))
	}
	timed := sim.Tick(start.Add(cfg.FlushInterval + time.Second))
	pods := map[string]bool{}
	for _, f := range timed {
		if pods[f.Proxy] {
			t.Errorf("%s flushed twice on one tick", f.Proxy)
		}
		pods[f.Proxy] = true
		if n := f.Traces.SpanCount(); n == 0 || n >= cfg.MinFlushSpans {
			t.Errorf("%s: timer flush of %d spans", f.Proxy, n)
		}
	}
	flushes = append(flushes, timed...)
	flushes = append(flushes, sim.Drain()...)
	total := 0
	for _, f := range flushes {
		rss := f.Traces.ResourceSpans()
		if rss.Len() != 1 || rss.At(0).ScopeSpans().Len() != 1 {
			t.Fatalf("%s: %d resources, want one resource with one scope", f.Proxy, rss.Len())
		}
		node, _ := rss.At(0).ScopeSpans().At(0).Spans().At(0).Attributes().Get("node_id")
		for _, s := range flatten(f.Traces) {
			if n, ok := s.Attributes().Get("node_id"); ok && n.Str() != node.Str() {
				t.Errorf("%s: one flush holds spans of two proxies", f.Proxy)
			}
		}
		total += f.Traces.SpanCount()
	}
	if st := sim.Stats(); total != st.Spans || st.Flushes != len(flushes) || st.Requests != 100 {
		t.Errorf("stats %+v, flushes held %d spans in %d flushes", st, total, len(flushes))
	}
}

// An app that drops traceparent starts new traces whose roots are its
// sidecar's CLIENT spans; whether the pieces share x-request-id depends only
// on whether it forwards x-request-id.
func TestBrokenPropagation(t *testing.T) {
	for _, forwardsID := range []bool{true, false} {
		cfg := DefaultConfig()
		cfg.ReviewsVersion = "v3"
		cfg.NoTraceContext["reviews"] = true
		cfg.NoRequestID["reviews"] = !forwardsID
		flushes, sim := simulate(t, cfg, 1)
		spans := flatten(merge(flushes))
		rids := map[string]bool{}
		var orphans []span
		for _, s := range spans {
			rids[rid(s)] = true
			if isOrphan(s) {
				orphans = append(orphans, s)
			}
		}
		if len(orphans) != 1 || orphans[0].Name() != "ratings.default.svc.cluster.local:9080/*" ||
			sim.Stats().Orphans != 1 {
			t.Fatalf("forwardsID=%v: orphans %d (stats %d), want reviews' CLIENT span to ratings", forwardsID, len(orphans), sim.Stats().Orphans)
		}
		ua, _ := orphans[0].Attributes().Get("user_agent")
		if ua.Str() == clientUserAgent {
			t.Errorf("the orphan kept the client's user_agent; an app that forwards nothing sends its own")
		}
		distinctTraces := map[string]bool{}
		for _, s := range spans {
			distinctTraces[s.TraceID().String()] = true
		}
		if len(distinctTraces) != 2 {
			t.Errorf("forwardsID=%v: %d traces, want 2", forwardsID, len(distinctTraces))
		}
		if wantIDs := map[bool]int{true: 1, false: 2}[forwardsID]; len(rids) != wantIDs {
			t.Errorf("forwardsID=%v: %d distinct x-request-ids, want %d", forwardsID, len(rids), wantIDs)
		}
	}
}

// Sampling follows x-request-id char 14 and Envoy's hash of its first 8 hex
// digits: about the configured share of page loads is traced; fragments
// that share a forwarded x-request-id are kept or dropped together, and
// fragments with fresh ids are sampled on their own.
func TestSampling(t *testing.T) {
	const requests = 3000
	run := func(forwardsID bool) (gwTraced int, split int) {
		cfg := DefaultConfig()
		cfg.SamplingPercent = 20
		cfg.Seed = 7
		cfg.NoTraceContext["productpage"] = true
		cfg.NoRequestID["productpage"] = !forwardsID
		flushes, _ := simulate(t, cfg, requests)
		// Per gateway trace: was it sampled, and were productpage's fragments?
		byRID := map[string][]span{}
		for _, s := range flatten(merge(flushes)) {
			if s.Attributes().Len() > 0 {
				byRID[rid(s)] = append(byRID[rid(s)], s)
				if r := rid(s); r[14] != '9' {
					t.Fatalf("emitted span with unsampled x-request-id %s", r)
				}
			}
			if node, _ := s.Attributes().Get("node_id"); strings.HasPrefix(node.Str(), "router~") {
				gwTraced++
			}
		}
		if forwardsID {
			for r, ss := range byRID {
				if len(ss) != 8 && len(ss) != 6 { // a whole request: reviews-v2/v3 or v1
					t.Logf("request %s: %d spans", r, len(ss))
					split++
				}
			}
		}
		return gwTraced, split
	}
	traced, split := run(true)
	if share := float64(traced) / requests; share < 0.16 || share > 0.24 {
		t.Errorf("%d of %d page loads traced (%.2f), want about 0.20", traced, requests, share)
	}
	if split != 0 {
		t.Errorf("%d requests with a forwarded x-request-id were sampled only in part", split)
	}
	// Fresh ids: productpage's fragments are traced whether or not the
	// gateway's was, so there are orphans whose gateway trace is missing.
	cfg := DefaultConfig()
	cfg.SamplingPercent = 20
	cfg.NoTraceContext["productpage"] = true
	cfg.NoRequestID["productpage"] = true
	_, sim := simulate(t, cfg, requests)
	st := sim.Stats()
	// Each page load has 2 productpage fragments, each sampled at 20%.
	if share := float64(st.Orphans) / (2 * requests); share < 0.16 || share > 0.24 {
		t.Errorf("orphan roots traced at %.2f, want about 0.20", share)
	}
}

// Same seed, same spans.
func TestDeterministic(t *testing.T) {
	cfg := DefaultConfig()
	a, _ := simulate(t, cfg, 20)
	b, _ := simulate(t, cfg, 20)
	ja, _ := (&ptrace.JSONMarshaler{}).MarshalTraces(merge(a))
	jb, _ := (&ptrace.JSONMarshaler{}).MarshalTraces(merge(b))
	if !bytes.Equal(ja, jb) {
		t.Error("two runs with one seed differ")
	}
}

func TestAppSDKSpans(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AppSDKSpans = true
	flushes, sim := simulate(t, cfg, 3)
	apps := 0
	for _, f := range flushes {
		if !strings.HasSuffix(f.Proxy, "/app") {
			continue
		}
		rs := f.Traces.ResourceSpans().At(0)
		if lang, _ := rs.Resource().Attributes().Get("telemetry.sdk.language"); lang.Str() != "python" {
			t.Errorf("app resource language %q", lang.Str())
		}
		for _, s := range flatten(f.Traces) {
			apps++
			if _, ok := s.Attributes().Get("istio.canonical_service"); ok || s.ParentSpanID().IsEmpty() {
				t.Errorf("app span %s has istio tags or no parent", s.Name())
			}
		}
	}
	if apps != 3 || sim.Stats().AppSpans != 3 {
		t.Errorf("%d app spans (stats %d), want 3", apps, sim.Stats().AppSpans)
	}
}

func TestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		mut  func(*Config)
		want string
	}{
		"version":         {func(c *Config) { c.IstioVersion = "2.0" }, "istio version"},
		"old version":     {func(c *Config) { c.IstioVersion = "1.10" }, "1.19 to 1.31"},
		"mode":            {func(c *Config) { c.DefaultMode = "APP" }, `mode "APP" is not one of`},
		"semconv too old": {func(c *Config) { c.Modes["details"] = OTelSemanticConventions }, "needs Istio 1.30"},
		"unknown app":     {func(c *Config) { c.NoTraceContext["frontend"] = true }, `"frontend": unknown app`},
		"spawn too old":   {func(c *Config) { c.SpawnUpstreamSpan = true }, "spawn_upstream_span needs Istio 1.26"},
		"sampling":        {func(c *Config) { c.SamplingPercent = 101 }, "sampling percent"},
		"reviews":         {func(c *Config) { c.ReviewsVersion = "v4" }, "reviews version"},
	} {
		cfg := DefaultConfig()
		tc.mut(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

// The wire shape follows the Istio version: cluster_id from 1.21, decorator
// names from 1.23, the ";" on upstream_cluster.name from 1.24, and the
// telemetry.sdk resource and envoy scope from 1.25.
func TestVersionShapes(t *testing.T) {
	for _, tc := range []struct {
		version                          string
		clusterID, decorators, semi, sdk bool
	}{
		{"1.20", false, false, false, false},
		{"1.22", true, false, false, false},
		{"1.23", true, true, false, false},
		{"1.24", true, true, true, false},
		{"1.25", true, true, true, true},
		{"1.31", true, true, true, true},
	} {
		cfg := DefaultConfig()
		cfg.IstioVersion = tc.version
		cfg.ReviewsVersion = "v2"
		flushes, _ := simulate(t, cfg, 1)
		for _, s := range flatten(merge(flushes)) {
			_, hasCID := s.Attributes().Get("istio.cluster_id")
			name, _ := s.Attributes().Get("upstream_cluster.name")
			_, hasSDK := s.res.Attributes().Get("telemetry.sdk.name")
			legacy := s.Name() == "ingress" || strings.HasPrefix(s.Name(), "egress ")
			if hasCID != tc.clusterID || legacy == tc.decorators || strings.HasSuffix(name.Str(), ";") != tc.semi ||
				hasSDK != tc.sdk || (s.scope.Name() == "envoy") != tc.sdk {
				t.Errorf("%s: %s: cluster_id=%v legacy name=%v upstream_cluster.name=%q sdk=%v scope=%q", tc.version,
					s.sig(), hasCID, legacy, name.Str(), hasSDK, s.scope.Name())
			}
		}
	}
}
