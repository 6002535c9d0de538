// Command meshsim plays the Envoy proxies of an Istio Bookinfo mesh and
// sends their spans to a collector over OTLP, as the proxies would.
//
//	go run ./e2e/cmd/meshsim -rate 5 -duration 30s \
//	  -modes productpage=CANONICAL_NAME_ONLY -no-traceparent productpage
//
// See e2e/meshsim for what the spans look like and why.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/otelcol-istio/otelcol-istio/e2e/meshsim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "meshsim:", err)
		os.Exit(1)
	}
}

func run() error {
	def := meshsim.DefaultConfig()
	var (
		protocol  = flag.String("protocol", "grpc", "OTLP transport: grpc or http")
		endpoint  = flag.String("endpoint", "", "collector endpoint (default localhost:4317 for grpc, localhost:4318 for http)")
		istio     = flag.String("istio", def.IstioVersion, "Istio version whose span shape to send (1.19 to 1.31)")
		mode      = flag.String("mode", string(def.DefaultMode), "tracingServiceName of every proxy: "+modeList())
		modes     = flag.String("modes", "", "per-app modes, e.g. productpage=OTEL_SEMANTIC_CONVENTIONS,reviews=CANONICAL_NAME_ONLY; apps: "+strings.Join(meshsim.Apps, ", "))
		noTP      = flag.String("no-traceparent", "", "apps that do not forward traceparent/tracestate, e.g. productpage")
		noRID     = flag.String("no-request-id", "", "apps that do not forward x-request-id")
		spawn     = flag.Bool("spawn-upstream-span", false, "gateway spawn_upstream_span (Istio >= 1.26)")
		reviews   = flag.String("reviews", "", "send every request to this reviews version (v1, v2, v3); default: all three in turn")
		sampling  = flag.Float64("sampling", def.SamplingPercent, "randomSamplingPercentage, 0 to 100")
		appSpans  = flag.Bool("app-spans", false, "add productpage's own OpenTelemetry SDK span (not an Istio span)")
		rate      = flag.Float64("rate", 2, "Bookinfo page loads per second")
		duration  = flag.Duration("duration", 0, "how long to run (0: until Ctrl-C)")
		flushN    = flag.Int("flush-spans", def.MinFlushSpans, "Envoy min_flush_spans")
		flushIval = flag.Duration("flush-interval", def.FlushInterval, "Envoy flush_interval")
		seed      = flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed (ids, timings, sampling)")
		verbose   = flag.Bool("v", false, "print one line per export")
	)
	flag.Parse()

	cfg := def
	cfg.IstioVersion, cfg.DefaultMode = *istio, meshsim.Mode(*mode)
	var err error
	if cfg.Modes, err = meshsim.ParseModes(*modes); err != nil {
		return err
	}
	cfg.NoTraceContext, cfg.NoRequestID = meshsim.ParseApps(*noTP), meshsim.ParseApps(*noRID)
	cfg.SpawnUpstreamSpan, cfg.ReviewsVersion, cfg.SamplingPercent = *spawn, *reviews, *sampling
	cfg.AppSDKSpans, cfg.MinFlushSpans, cfg.FlushInterval, cfg.Seed = *appSpans, *flushN, *flushIval, *seed
	sim, err := meshsim.New(cfg)
	if err != nil {
		return err
	}
	if *endpoint == "" {
		*endpoint = map[string]string{"grpc": "localhost:4317", "http": "localhost:4318"}[*protocol]
	}
	send, err := meshsim.NewSender(*protocol, *endpoint)
	if err != nil {
		return err
	}
	defer send.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	failed := 0
	err = meshsim.Run(ctx, sim, send, meshsim.RunOptions{Rate: *rate, Duration: *duration, OnFlush: func(f meshsim.Flush, err error) {
		if err != nil {
			failed++
		}
		if *verbose || (err != nil && failed <= 3) {
			fmt.Fprintf(os.Stderr, "export %-40s %d spans err=%v\n", f.Proxy, f.Traces.SpanCount(), err)
		}
	}})
	st := sim.Stats()
	fmt.Fprintf(os.Stderr, "meshsim: %d page loads, %d spans in %d exports (%d failed), %d orphan roots, %d app spans, %d sampled out\n",
		st.Requests, st.Spans, st.Flushes, failed, st.Orphans, st.AppSpans, st.SampledOut)
	return err
}

func modeList() string {
	var s []string
	for _, m := range meshsim.Modes {
		s = append(s, string(m))
	}
	return strings.Join(s, ", ")
}
