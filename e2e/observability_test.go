package e2e

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
	"github.com/otelcol-istio/otelcol-istio/e2e/meshsim"
)

// observabilityMetrics returns the collector metrics that the alert rules and
// the dashboard of deploy/observability use (the deploy module's
// TestObservabilityMetricList keeps metrics.txt equal to them).
func observabilityMetrics(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "deploy", "observability", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			names = append(names, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("metrics.txt lists no metric")
	}
	return names
}

// exportedMetricNames are the metric families in a Prometheus text scrape.
var sampleName = regexp.MustCompile(`(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]`)

func exportedMetricNames(scrape string) map[string]bool {
	names := map[string]bool{}
	for _, m := range sampleName.FindAllStringSubmatch(scrape, -1) {
		names[m[1]] = true
	}
	return names
}

// Every metric name used by the alert rules and the dashboard is one that the
// binary, running the shipped config, exports after traffic that exercises
// each: simulated Bookinfo where productpage drops traceparent but forwards
// x-request-id (renamed spans, outbound calls, orphans, relinked pairs), a
// request with invalid UTF-8 (rejected and refused spans) and a backend that
// refuses an export as bad data (failed exports). A metric renamed upstream or by us
// fails here, not in an on-call night.
func TestObservabilityMetrics(t *testing.T) {
	want := observabilityMetrics(t)
	backend := harness.StartBackend(t)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cfg := meshsim.DefaultConfig()
	cfg.IstioVersion = "1.30"
	cfg.Modes = map[string]meshsim.Mode{"istio-ingressgateway": meshsim.CanonicalNameOnly, "reviews": meshsim.CanonicalNameOnly}
	cfg.NoTraceContext = map[string]bool{"productpage": true}
	sim, err := meshsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	send, err := meshsim.NewSender("grpc", col.GRPCEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	start := time.Now().Add(-time.Minute)
	var flushes []meshsim.Flush
	for i := range 20 {
		flushes = append(flushes, sim.Request(start.Add(time.Duration(i)*50*time.Millisecond))...)
	}
	flushes = append(flushes, sim.Drain()...)
	for _, f := range flushes {
		if err := send.Send(ctx, f.Traces); err != nil {
			t.Fatal(err)
		}
	}
	if sim.Stats().Orphans == 0 {
		t.Fatal("the simulator made no orphans")
	}
	backend.WaitForSpans(sim.Stats().Spans, 30*time.Second)

	if err := harness.SendGRPC(ctx, col.GRPCEndpoint, withAttrs("utf8-\xff-bad", nil)); err == nil {
		t.Error("a span with invalid UTF-8 was accepted")
	}

	// A permanent refusal: the exporter gives up on the batch and counts it
	// (retryable failures are retried without end and counted nowhere).
	backend.SetFailure(harness.Failure{GRPCCode: codes.InvalidArgument})
	if err := harness.SendGRPC(ctx, col.GRPCEndpoint, oneSpan("refused-by-backend")); err != nil {
		t.Fatal(err)
	}

	var missing []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		exported := exportedMetricNames(get(t, "http://"+col.MetricsEndpoint+"/metrics"))
		missing = slices.DeleteFunc(slices.Clone(want), func(n string) bool { return exported[n] })
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	backend.SetFailure(harness.Failure{})
	if len(missing) > 0 {
		t.Errorf("deploy/observability uses metrics the binary does not export after traffic: %v", missing)
	}
}
