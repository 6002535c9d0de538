package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
	"github.com/otelcol-istio/otelcol-istio/e2e/meshsim"
)

// xssService is a service.name that tries to run script in the page. A
// sidecar span without Istio tags keeps its resource's name, so it reaches
// the propagation report as sent.
const xssService = `<img src=x onerror="document.title='xss'">.default`

// findChromium returns the browser the test drives, or skips with what to
// install. .ci/run installs Debian's chromium package.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium on this machine: apt-get install chromium (.ci/run does) to run the browser test of the /status page")
	return ""
}

// xssOrphan is one root CLIENT span from a sidecar without Istio tags, under
// xssService: istio_span leaves the name as it is and flags the orphan.
func xssOrphan() ptrace.Traces {
	td := oneSpan("outbound|9080||details.default.svc.cluster.local")
	rs := td.ResourceSpans().At(0)
	rs.Resource().Attributes().PutStr("service.name", xssService)
	s := rs.ScopeSpans().At(0).Spans().At(0)
	s.SetKind(ptrace.SpanKindClient)
	s.Attributes().PutStr("node_id", "sidecar~10.0.0.9~xss-1.default~default.svc.cluster.local")
	s.Attributes().PutStr("upstream_cluster", "outbound|9080||details.default.svc.cluster.local")
	return td
}

// The /status page in a real browser (headless Chromium through chromedp):
// simulated Bookinfo where productpage forwards no trace header, through the
// built binary on the shipped config. The page shows the broken service as
// the first row with its diagnosis and what to change, the exporter
// delivering; once the backend stops, the page shows it failing after a
// refresh, without a reload. A service name carrying markup shows as text. A
// screenshot is saved under bin/test-artifacts/.
func TestStatusPageInBrowser(t *testing.T) {
	chromium := findChromium(t)
	backend := harness.StartBackend(t)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", t.TempDir()), writeConfig(t, `
extensions:
  health_check:
    delivery:
      window: 6s
      scrape_interval: 1s
`))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cfg := meshsim.DefaultConfig()
	cfg.NoTraceContext = map[string]bool{"productpage": true}
	cfg.NoRequestID = map[string]bool{"productpage": true}
	steadyBookinfo(t, col.GRPCEndpoint, cfg)
	if sendErr := harness.SendGRPC(ctx, col.GRPCEndpoint, xssOrphan()); sendErr != nil {
		t.Fatal(sendErr)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in CI
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
		// This machine has no network: keep Chromium from trying.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	url := "http://" + col.HealthEndpoint + "/status"
	// text reads an element's text by CSS selector; "" when it is absent.
	text := func(selector string) string {
		t.Helper()
		s, readErr := chromedp.Run(browser, chromedp.Evaluate[string](
			`(() => { const e = document.querySelector(`+jsString(selector)+`); return e ? e.textContent : ""; })()`))
		if readErr != nil {
			t.Fatalf("reading %s: %v", selector, readErr)
		}
		return s
	}
	waitFor := func(what, js string) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			ok, evalErr := chromedp.Run(browser, chromedp.Evaluate[bool](js))
			if evalErr != nil {
				t.Fatalf("%s: %v", what, evalErr)
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the page never showed %s; it shows:\n%s", what, text("body"))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	if navErr := chromedp.Do(browser, chromedp.Navigate(url)); navErr != nil {
		t.Fatal(navErr)
	}
	waitFor("productpage as the first propagation row", `(() => {
		const c = document.querySelector("#propagation tbody tr th.service");
		return !!c && c.textContent === "productpage.default";
	})()`)
	waitFor("the exporter delivering", `(() => {
		const s = document.querySelector('#exporters tr[data-exporter="otlp_grpc"] .exporter-state');
		return !!s && s.textContent.startsWith("delivering");
	})()`)
	firstService := text("#propagation tbody tr:first-child th.service")
	firstDiagnosis := text("#propagation tbody tr:first-child td.diagnosis")
	firstFix := text("#propagation tbody tr:first-child td.fix")
	overall := text("#overall-text")
	if firstDiagnosis != "forwards no trace headers" {
		t.Errorf("first row %s: diagnosis %q", firstService, firstDiagnosis)
	}
	if !strings.Contains(firstFix, "traceparent") || !strings.Contains(firstFix, "x-request-id") {
		t.Errorf("first row %s: what to change %q names neither header", firstService, firstFix)
	}
	if !strings.HasPrefix(overall, "Status: ") {
		t.Errorf("overall status in words: %q", overall)
	}

	// The service name with markup is text in a cell, and ran nothing.
	waitFor("the markup service name as text", `(() => [...document.querySelectorAll("#propagation th.service")].some(c => c.textContent === `+
		jsString(xssService)+`))()`)
	injected, err := chromedp.Run(browser, chromedp.Evaluate[bool](`document.querySelectorAll("#status img").length > 0`))
	if err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(browser, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if injected || title == "xss" {
		t.Errorf("span data became markup: img elements %v, title %q", injected, title)
	}
	saveArtifact(t, "status-page-delivering.png", screenshot(t, browser))

	// On a phone the page does not scroll sideways: wide tables scroll in
	// their own box.
	if viewErr := chromedp.Do(browser, chromedp.EmulateViewport(390, 844)); viewErr != nil {
		t.Fatal(viewErr)
	}
	overflow, err := chromedp.Run(browser, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	if err != nil {
		t.Fatal(err)
	}
	if overflow {
		t.Error("on a 390 px wide screen the page scrolls sideways")
	}
	saveArtifact(t, "status-page-phone.png", screenshot(t, browser))
	if err := chromedp.Do(browser, chromedp.EmulateViewport(1280, 1000)); err != nil {
		t.Fatal(err)
	}

	// The backend goes away: after a refresh, without a reload, the page
	// shows the exporter failing.
	backend.Stop()
	waitFor("the exporter not delivering", `(() => {
		const s = document.querySelector('#exporters tr[data-exporter="otlp_grpc"] .exporter-state');
		return !!s && s.textContent === "not delivering";
	})()`)
	t.Logf("backend stopped: the page says %q", text(`#exporters tr[data-exporter="otlp_grpc"] .exporter-error`))
	saveArtifact(t, "status-page-failing.png", screenshot(t, browser))
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// screenshot takes a full-page PNG of the browser's page.
func screenshot(t *testing.T, browser context.Context) []byte { //nolint:revive // t first, as every test helper here
	t.Helper()
	png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	return png
}

// saveArtifact writes a test artifact under bin/test-artifacts/ (kept after
// the run, ignored by git).
func saveArtifact(t *testing.T, name string, content []byte) {
	t.Helper()
	dir := filepath.Join(harness.RepoRoot(), "bin", "test-artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s", path)
}

// steadyBookinfo sends simulated Bookinfo requests every 100 ms to endpoint
// over gRPC until the test ends; refusals (a backend down) are expected.
func steadyBookinfo(t *testing.T, endpoint string, cfg meshsim.Config) {
	t.Helper()
	sim, err := meshsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	send, err := meshsim.NewSender("grpc", endpoint)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				for _, f := range sim.Request(now) {
					_ = send.Send(ctx, f.Traces)
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		send.Close()
	})
}
