package e2e

import (
	"bufio"
	"context"
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

var serviceNameRe = regexp.MustCompile(`(?:^| )service\.name=(\S+)`)

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
	orphans := demoFlagsOrphans(t)
	checkDemoOutput(t, string(out), orphans)
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
	if strings.Contains(string(out), "\twarn\t") {
		t.Errorf("the demo printed a warning:\n%s", tail(string(out), 3000))
	}
}

// Ctrl-C (SIGINT) stops the demo cleanly: the simulator drains, the
// collector shuts down, and the demo exits 0.
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
	for !strings.Contains(out.String(), "\nResourceTraces #") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("no spans printed within 60s:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
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

func checkDemoOutput(t *testing.T, out string, orphans bool) {
	t.Helper()
	banner := strings.Index(out, "otelcol-istio demo:")
	first := strings.Index(out, "\nResourceTraces #") // the banner mentions the word too
	if banner < 0 || first < 0 || banner > first {
		t.Fatalf("want the explanation before the first span (banner at %d, first resource at %d):\n%s", banner, first, tail(out, 3000))
	}
	renamed := map[string]bool{}
	orphanLines, resources := 0, 0
	sc := bufio.NewScanner(strings.NewReader(out[first:]))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ResourceTraces ") {
			resources++
			m := serviceNameRe.FindStringSubmatch(line)
			if len(m) < 2 || !workloadNames[m[1]] {
				t.Errorf("resource not normalised: %s", line)
			}
			if i := strings.Index(line, "istio.original_service_name="); i >= 0 {
				renamed[strings.Fields(line[i:])[0]] = true
			}
			continue
		}
		if strings.Contains(line, "istio.orphan=true") {
			orphanLines++
			if !strings.Contains(line, "node_id=sidecar~10.244.0.25~productpage-v1") ||
				!strings.HasPrefix(line, "details.default.svc") && !strings.HasPrefix(line, "reviews.default.svc") ||
				!strings.Contains(line, "istio.orphan.reason=missing_trace_context") {
				t.Errorf("flagged span is not one of productpage's CLIENT calls: %.200s", line)
			}
		}
	}
	if resources == 0 {
		t.Fatal("no resources printed")
	}
	for _, want := range []string{"istio.original_service_name=productpage-v1", "istio.original_service_name=reviews"} {
		if !renamed[want] {
			t.Errorf("no resource with %s; saw %v", want, renamed)
		}
	}
	if orphans && orphanLines == 0 {
		t.Error("the demo config enables orphans, but no span was flagged istio.orphan=true")
	}
	if !orphans && orphanLines != 0 {
		t.Errorf("%d spans flagged although the demo config does not enable orphans", orphanLines)
	}
}

// demoFlagsOrphans reads whether distribution/config.demo.yaml turns on
// istio_span's orphan step.
func demoFlagsOrphans(t *testing.T) bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "distribution", "config.demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Processors struct {
			IstioSpan struct {
				Orphans *struct {
					Enabled *bool `yaml:"enabled"`
				} `yaml:"orphans"`
			} `yaml:"istio_span"`
		} `yaml:"processors"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	o := doc.Processors.IstioSpan.Orphans
	return o != nil && (o.Enabled == nil || *o.Enabled)
}
