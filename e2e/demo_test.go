package e2e

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// workloadNames are the only service.name values a normalised Bookinfo
// resource may have (CANONICAL_NAME_AND_NAMESPACE).
var workloadNames = map[string]bool{
	"istio-ingressgateway.istio-system": true, "productpage.default": true, "details.default": true,
	"reviews.default": true, "ratings.default": true,
}

// spanLineRe is one span line of the demo: SERVICE ORPHAN KIND SPAN TRACE
// [NOTE] (e2e/cmd/demo/printer.go).
var spanLineRe = regexp.MustCompile(`^(\S+) +(ORPHAN|-) +(SERVER|CLIENT|[A-Z]+) +(\S+) +([0-9a-f]{8})(?:  (.*))?$`)

// maxDemoLine is how wide a span line may be: a terminal, not a log viewer.
const maxDemoLine = 130

// `make demo` with DEMO_DURATION runs bounded: it prints the explanation
// first, then normalised resources (and, when the demo config enables the
// orphan step, flagged orphans on exactly productpage's CLIENT spans), and
// stops the collector cleanly.
func TestDemoBounded(t *testing.T) {
	harness.Binary(t) // build once, shared with the other tests
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "demo", "DEMO_DURATION=8s")
	cmd.Dir = harness.RepoRoot()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, out)
	}
	orphans, linked := demoFlagsOrphans(t)
	checkDemoOutput(t, string(out), orphans, linked)
	if !strings.Contains(string(out), "Collector stopped: cleanly") {
		t.Errorf("the demo did not report a clean collector stop:\n%s", tail(string(out), 3000))
	}
	// The demo ends with /status's propagation report naming productpage,
	// the one workload that drops traceparent but forwards x-request-id.
	if orphans {
		for _, want := range []string{`"propagation" report`, `"service": "productpage.default"`,
			"forwards x-request-id but not traceparent"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("the demo's closing report lacks %q:\n%s", want, tail(string(out), 3000))
			}
		}
	}
	if !pageURLRe.MatchString(string(out)) {
		t.Errorf("the demo does not print the /status page's address:\n%s", tail(string(out), 3000))
	}
	if strings.Contains(string(out), "\twarn\t") || strings.Contains(string(out), "\terror\t") {
		t.Errorf("the demo printed a warning or an error:\n%s", tail(string(out), 3000))
	}
}

// pageURLRe is the demo's closing line that gives the /status page.
var pageURLRe = regexp.MustCompile(`open (http://127\.0\.0\.1:\d+/status) in a browser`)

// Unbounded, the demo prints the /status page's address after its span
// lines and keeps the collector (and the simulated mesh) up: a browser gets
// the page there until Ctrl-C. Ctrl-C (SIGINT) then stops the demo cleanly:
// the simulator drains, the collector shuts down, and the demo exits 0.
func TestDemoInterrupt(t *testing.T) {
	demo := filepath.Join(t.TempDir(), "demo")
	build := exec.Command("go", "build", "-o", demo, "./cmd/demo")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build demo: %v\n%s", err, out)
	}
	root := harness.RepoRoot()
	cmd := exec.Command(demo, "-binary", harness.Binary(t), "-config", filepath.Join(root, "distribution", "config.demo.yaml"))
	var out harness.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	var page []string
	for page = pageURLRe.FindStringSubmatch(out.String()); page == nil; page = pageURLRe.FindStringSubmatch(out.String()) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("no /status page address printed within 60s:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "\nproductpage.default ") {
		t.Errorf("no span lines before the page's address:\n%s", tail(out.String(), 3000))
	}
	// The collector is still up: the address gives the page to a browser.
	req, err := http.NewRequest(http.MethodGet, page[1], http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the page's address does not answer after the report: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("the page's address answered %d %s, want 200 text/html", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exited with %v after SIGINT:\n%s", err, tail(out.String(), 3000))
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("demo still running 30s after SIGINT")
	}
	if !strings.Contains(out.String(), "Collector stopped: cleanly") {
		t.Errorf("no clean collector stop reported:\n%s", tail(out.String(), 3000))
	}
}

func checkDemoOutput(t *testing.T, out string, orphans, linked bool) {
	t.Helper()
	banner := strings.Index(out, "otelcol-istio demo:")
	first := strings.Index(out, "\nSERVICE (normalised)  ")
	if banner < 0 || first < 0 || banner > first {
		t.Fatalf("want the explanation before the span lines (banner at %d, header at %d):\n%s", banner, first, tail(out, 3000))
	}
	renamed := map[string]bool{}
	orphanLines, linkedLines, spans := 0, 0, 0
	sc := bufio.NewScanner(strings.NewReader(out[first+1:]))
	sc.Scan() // the header
	for sc.Scan() {
		line := sc.Text()
		m := spanLineRe.FindStringSubmatch(line)
		if m == nil {
			if line == "" {
				break // the span lines end where the closing report starts
			}
			t.Errorf("not a span line: %q", line)
			continue
		}
		spans++
		if len(line) > maxDemoLine {
			t.Errorf("span line of %d characters (at most %d): %s", len(line), maxDemoLine, line)
		}
		service, flag, kind, name, note := m[1], m[2], m[3], m[4], m[6]
		if !workloadNames[service] {
			t.Errorf("service not normalised: %s", line)
		}
		if was, ok := strings.CutPrefix(note, "was "); ok {
			renamed[strings.Split(was, ",")[0]] = true
		}
		if flag == "ORPHAN" {
			orphanLines++
			if service != "productpage.default" || kind != "CLIENT" ||
				!strings.HasPrefix(name, "details.default:") && !strings.HasPrefix(name, "reviews.default:") {
				t.Errorf("flagged span is not one of productpage's CLIENT calls: %s", line)
			}
			if strings.Contains(note, "linked") {
				linkedLines++
			}
		}
	}
	if spans == 0 {
		t.Fatal("no span lines printed")
	}
	for _, want := range []string{"productpage-v1", "reviews"} {
		if !renamed[want] {
			t.Errorf("no span line noting \"was %s\"; saw %v", want, renamed)
		}
	}
	if orphans && orphanLines == 0 {
		t.Error("the demo config enables orphans, but no span line is flagged ORPHAN")
	}
	if !orphans && orphanLines != 0 {
		t.Errorf("%d spans flagged although the demo config does not enable orphans", orphanLines)
	}
	if orphans && linked && linkedLines == 0 {
		t.Error("the demo config links orphans by x-request-id, but no orphan line notes \"linked\"")
	}
}

// demoFlagsOrphans reads whether distribution/config.demo.yaml turns on
// istio_span's orphan step, and its re-linking by x-request-id.
func demoFlagsOrphans(t *testing.T) (orphans, linked bool) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "distribution", "config.demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Processors struct {
			IstioSpan struct {
				Orphans *struct {
					Enabled         *bool `yaml:"enabled"`
					LinkByRequestID *bool `yaml:"link_by_request_id"`
				} `yaml:"orphans"`
			} `yaml:"istio_span"`
		} `yaml:"processors"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	o := doc.Processors.IstioSpan.Orphans
	orphans = o != nil && (o.Enabled == nil || *o.Enabled)
	// link_by_request_id defaults to true (istio_span's README).
	return orphans, orphans && (o.LinkByRequestID == nil || *o.LinkByRequestID)
}
