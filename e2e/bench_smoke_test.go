package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/otelcol-istio/otelcol-istio/bench/collectorbench"
	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// The end-to-end benchmark runner works on the real binary with a tiny
// load, so `make bench` cannot rot: both pipelines and both transports
// deliver every accepted span to the sink, CPU and peak RSS are read from
// /proc, and the table renders. No figure is judged here.
func TestBenchRunnerSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := collectorbench.Run(ctx, collectorbench.Options{
		Binary:        harness.Binary(t),
		Protocols:     []string{"grpc", "http"},
		CompareRate:   2000,
		PhaseDuration: time.Second,
		Rounds:        1,
		MaxRateSteps:  []float64{1000},
		StepDuration:  time.Second,
		Drain:         5 * time.Second,
		Workers:       4,
		PoolSpans:     2000,
		GOMAXPROCS:    1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Comparisons) != 2 || len(rep.Steps) != 2 {
		t.Fatalf("%d comparisons and %d steps, want 2 and 2", len(rep.Comparisons), len(rep.Steps))
	}
	for _, c := range rep.Comparisons {
		if c.FullSpans == 0 || c.BaseSpans == 0 || c.FullCPU <= 0 || c.BaseCPU <= 0 || c.FullRSS == 0 || c.BaseRSS == 0 {
			t.Errorf("%s: nothing measured: %+v", c.Protocol, c)
		}
		if c.Refused != 0 || c.FullLost != 0 || c.BaseLost != 0 {
			t.Errorf("%s: refused %d, lost %d/%d at 2000 spans/s", c.Protocol, c.Refused, c.FullLost, c.BaseLost)
		}
	}
	for _, s := range rep.Steps {
		if s.Load.Accepted == 0 || s.Received != s.Load.Accepted {
			t.Errorf("%s step: accepted %d, sink got %d", s.Protocol, s.Load.Accepted, s.Received)
		}
	}
	var out bytes.Buffer
	rep.Write(&out, "")
	for _, want := range []string{"ratio (a)/(b)", "| grpc |", "| http |", "highest sustained"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
