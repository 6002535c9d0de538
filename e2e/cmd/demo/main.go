// Command demo is `make demo`: it starts the collector on
// distribution/config.demo.yaml and the Bookinfo mesh simulator in front of
// it, after one screen that says what the output shows. It stops cleanly on
// Ctrl-C, or after -duration (DEMO_DURATION in the Makefile).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"sync/atomic"
	"syscall"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
	"github.com/otelcol-istio/otelcol-istio/e2e/meshsim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	binary := flag.String("binary", "bin/otelcol-istio", "the collector binary")
	config := flag.String("config", "distribution/config.demo.yaml", "the collector config")
	durationFlag := flag.String("duration", "", "stop after this long (e.g. 10s); empty: run until Ctrl-C")
	rate := flag.Float64("rate", 2, "Bookinfo page loads per second")
	flag.Parse()
	var duration time.Duration
	if *durationFlag != "" {
		d, err := time.ParseDuration(*durationFlag)
		if err != nil || d <= 0 {
			return fmt.Errorf("duration %q: want a positive Go duration such as 10s", *durationFlag)
		}
		duration = d
	}
	orphans, err := orphansEnabled(*config)
	if err != nil {
		return err
	}
	simCfg := demoMesh()
	err = explain(os.Stdout, *config, orphans, *rate, duration)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	spanPrinter, err := startPrinter(os.Stdout)
	if err != nil {
		return err
	}
	defer spanPrinter.stop()
	col, grpcEndpoint, err := startCollector(ctx, *binary, *config, spanPrinter.addr)
	if err != nil {
		return err
	}
	defer func() { _ = col.stop() }()
	fmt.Print(header())

	sim, err := meshsim.New(simCfg)
	if err != nil {
		return err
	}
	send, err := meshsim.NewSender("grpc", grpcEndpoint)
	if err != nil {
		return err
	}
	defer send.Close()
	var failed atomic.Int64
	runDone := make(chan error, 1)
	go func() {
		runDone <- meshsim.Run(ctx, sim, send, meshsim.RunOptions{Rate: *rate, Duration: duration,
			OnFlush: func(_ meshsim.Flush, err error) {
				if err != nil {
					failed.Add(1)
				}
			}})
	}()
	// Span lines for a while, then the closing report and the /status page's
	// address; the simulator keeps the page live until Ctrl-C or the duration.
	var runErr error
	finished := false
	select {
	case runErr = <-runDone:
		finished = true
	case <-time.After(spanLinesFor):
	}
	// Let the batch processor (timeout 1s) export the last spans.
	time.Sleep(1500 * time.Millisecond)
	spanPrinter.mute()
	if report, err := col.propagationReport(); err == nil {
		fmt.Printf("\nWhich services break traces: health_check's /status \"propagation\" report:\n%s\n", report)
	} else {
		fmt.Printf("\n(no propagation report: %v)\n", err)
	}
	fmt.Printf("\nThe same, as a page: open http://%s/status in a browser (it refreshes itself).\n", col.health)
	if !finished {
		fmt.Println("The simulated mesh keeps sending, so the page stays live. " + explainStop(duration))
		runErr = <-runDone
	}
	colErr := col.stop()
	st := sim.Stats()
	fmt.Printf("\ndemo: the simulator sent %d spans (%d page loads, %d exports, %d failed; %d orphan roots). Collector stopped: %v\n",
		st.Spans, st.Requests, st.Flushes, failed.Load(), st.Orphans, errOrOK(colErr))
	if runErr != nil {
		return fmt.Errorf("simulator: %w", runErr)
	}
	return colErr
}

// demoMesh is a mesh mid-migration: each workload names itself differently,
// and productpage drops traceparent but forwards x-request-id.
func demoMesh() meshsim.Config {
	cfg := meshsim.DefaultConfig()
	cfg.IstioVersion = "1.30"
	cfg.Modes = map[string]meshsim.Mode{
		"productpage": meshsim.OTelSemanticConventions,
		"reviews":     meshsim.CanonicalNameOnly,
	}
	cfg.NoTraceContext["productpage"] = true
	cfg.Seed = uint64(time.Now().UnixNano())
	return cfg
}

var screen = template.Must(template.New("").Parse(`
==============================================================================================
 otelcol-istio demo: a simulated Istio Bookinfo mesh sends its proxies' spans to the collector
==============================================================================================
 Running: bin/otelcol-istio on {{.Config}}, and a simulator playing
 Bookinfo's Envoy proxies (ingress gateway -> productpage -> details; productpage -> reviews ->
 ratings), {{.Rate}} page loads/s. Each proxy exports every 5 spans or 5 s, as Envoy does. {{.Stop}}

 The proxies name themselves differently, as in a mesh mid-migration (Istio 1.30):
   gateway, details, ratings   APP_LABEL_AND_NAMESPACE    -> istio-ingressgateway.istio-system, details.default
   productpage                 OTEL_SEMANTIC_CONVENTIONS  -> productpage-v1
   reviews (v1, v2, v3)        CANONICAL_NAME_ONLY        -> reviews
 and productpage forwards x-request-id but not traceparent, so each of its calls starts a new trace.

 Below, one line per span as the collector exports it: SERVICE, ORPHAN, KIND, SPAN (name,
 without .svc.cluster.local), TRACE (first 8 hex digits of the trace id), NOTE. Look for:
 1. SERVICE: every Istio resource is service.name=<workload>.<namespace> (productpage.default,
    reviews.default). NOTE "was productpage-v1": the name the proxy sent, which istio_span kept in
    istio.original_service_name (it also adds service.namespace and service.version).
{{- if .Orphans}}
 2. ORPHAN: productpage's CLIENT calls to details and reviews start new traces (no parent), so
    istio_span sets istio.orphan=true (istio.orphan.reason=missing_trace_context) on them, and
    adds a span link to the productpage SERVER span with the same x-request-id (NOTE "linked"),
    so the trace can be followed across the break.
{{- else}}
 2. ORPHAN: productpage's CLIENT calls to details and reviews start new traces. This config does
    not flag them (the column stays "-"): see the "orphans" block in {{.Config}}.
{{- end}}
 After {{.SpanLinesFor}}, health_check's /status names the services that break traces, and why,
 and the demo prints the address of the same report as a page for a browser.
==============================================================================================

`))

// spanLinesFor is how long span lines are printed before the closing report.
const spanLinesFor = 10 * time.Second

func explain(w *os.File, config string, orphans bool, rate float64, d time.Duration) error {
	return screen.Execute(w, map[string]any{"Config": config, "Orphans": orphans, "Rate": rate, "Stop": explainStop(d),
		"SpanLinesFor": spanLinesFor})
}

// explainStop says how the demo ends.
func explainStop(d time.Duration) string {
	if d > 0 {
		return fmt.Sprintf("Runs for %s (or Ctrl-C).", d)
	}
	return "Stop with Ctrl-C."
}

// orphansEnabled says whether the config turns on istio_span's orphan step,
// so the explanation matches what the output will show.
func orphansEnabled(path string) (bool, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	var doc struct {
		Processors map[string]struct {
			Orphans *struct {
				Enabled *bool `yaml:"enabled"`
			} `yaml:"orphans"`
		} `yaml:"processors"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	o := doc.Processors["istio_span"].Orphans
	return o != nil && (o.Enabled == nil || *o.Enabled), nil
}

type collector struct {
	// health is the health_check endpoint, host:port.
	health string
	cmd    *exec.Cmd
	// exited is closed when the process has ended; waitErr is set before.
	exited  chan struct{}
	waitErr error
	err     error
}

// startCollector runs the binary on free ports in its own process group, so
// that Ctrl-C reaches only the demo, which stops the simulator first and
// the collector after it.
func startCollector(ctx context.Context, binary, config, printEndpoint string) (*collector, string, error) {
	ports := make([]string, 4)
	for i := range ports {
		addr, err := harness.FreeAddr()
		if err != nil {
			return nil, "", err
		}
		_, ports[i], _ = net.SplitHostPort(addr)
	}
	cmd := exec.Command(binary, "--config", config)
	cmd.Env = append(os.Environ(), "DEMO_OTLP_GRPC_ENDPOINT=127.0.0.1:"+ports[0], "DEMO_OTLP_HTTP_ENDPOINT=127.0.0.1:"+ports[1],
		"DEMO_HEALTH_ENDPOINT=127.0.0.1:"+ports[2], "DEMO_METRICS_PORT="+ports[3], "DEMO_PRINT_ENDPOINT="+printEndpoint)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", binary, err)
	}
	c := &collector{health: "127.0.0.1:" + ports[2], cmd: cmd, exited: make(chan struct{})}
	go func() { c.waitErr = cmd.Wait(); close(c.exited) }()
	ready, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch err := harness.PollHealthy(ready, c.health, c.exited); {
	case errors.Is(err, harness.ErrExited):
		return nil, "", fmt.Errorf("collector exited before it was ready: %w", c.waitErr)
	case ctx.Err() != nil:
		_ = c.stop()
		return nil, "", ctx.Err()
	case err != nil:
		_ = c.stop()
		return nil, "", errors.New("collector not ready after 30s")
	}
	return c, "127.0.0.1:" + ports[0], nil
}

// propagationReport fetches /status and returns its "propagation" entry,
// indented: what istio_span tells on-call people about broken propagation.
func (c *collector) propagationReport() (string, error) {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + c.health + "/status")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var doc map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return "", fmt.Errorf("decoding /status: %w", err)
	}
	report, ok := doc["propagation"]
	if !ok {
		return "", errors.New(`/status has no "propagation" entry`)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, report, "  ", "  "); err != nil {
		return "", err
	}
	return "  " + out.String(), nil
}

// stop sends SIGTERM and waits for a clean exit (SIGKILL after 15s). It is
// safe to call twice.
func (c *collector) stop() error {
	if c.cmd == nil {
		return c.err
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		c.err = c.waitErr
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
		c.err = errors.New("collector did not stop within 15s; killed")
	}
	c.cmd = nil
	return c.err
}

func errOrOK(err error) string {
	if err != nil {
		return err.Error()
	}
	return "cleanly"
}
