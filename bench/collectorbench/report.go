package collectorbench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Machine describes where the figures were taken.
type Machine struct {
	CPU                   string
	CPUs                  int
	Kernel                string
	Go                    string
	Commit                string
	LoadBefore, LoadAfter string
}

// ReadMachine reads /proc and git; missing pieces stay empty.
func ReadMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadBefore: loadAvg()}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(raw))
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	return m
}

func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func verdict(ok bool) string {
	if ok {
		return "meets"
	}
	return "MISSES"
}

// Write renders the report as Markdown. micro, if not empty, is `go test
// -bench` output whose benchmark lines are added as a table.
func (r *Report) Write(w io.Writer, micro string) {
	o := r.Options
	fmt.Fprintf(w, "# otelcol-istio benchmark, %s\n\n", r.Started.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "| machine | |\n|---|---|\n")
	fmt.Fprintf(w, "| CPU | %s × %d |\n| kernel / Go | %s / %s |\n| commit | %s |\n", r.Machine.CPU, r.Machine.CPUs,
		r.Machine.Kernel, r.Machine.Go, r.Machine.Commit)
	fmt.Fprintf(w, "| load average before / after | %s / %s |\n", r.Machine.LoadBefore, r.Machine.LoadAfter)
	pin := "not pinned"
	if o.CollectorCPUs != "" {
		pin = "taskset -c " + o.CollectorCPUs + " (benchmark process on the other CPUs)"
	}
	fmt.Fprintf(w, "| collector | GOMAXPROCS=%d, %s |\n", o.GOMAXPROCS, pin)
	fmt.Fprintf(w, "| exporter | otlp_grpc, compression %s, %s sending queue with batching |\n", o.Compression, o.Queue)
	fmt.Fprintf(w, "| load | Bookinfo mix (40%% renamed, 30%% normalised, 20%% orphan traffic, 10%% non-Istio), %d pre-encoded exports of %.1f spans, %d senders |\n\n",
		r.PoolRequests, r.PoolSpansPerReq, o.Workers)
	for _, proto := range o.Protocols {
		if c, ok := r.Ceiling[proto]; ok {
			fmt.Fprintf(w, "Replayer ceiling, %s straight into a sink in the same process: %.0f spans/s.\n", proto, c.Achieved())
		}
	}
	fmt.Fprintln(w)

	if micro = strings.TrimSpace(micro); micro != "" {
		fmt.Fprintf(w, "## istio_span micro benchmarks (go test -bench)\n\n%s\n", microTable(micro))
	}

	fmt.Fprintf(w, "## Full pipeline (a) vs without istio_span (b), %d rounds of %s each, interleaved\n\n", o.Rounds, o.PhaseDuration)
	fmt.Fprintf(w, "| protocol | load | (a) CPU s / M spans | (b) CPU s / M spans | ratio (a)/(b) | per-round ratios | target ≤1.03 | (a) peak RSS | (b) peak RSS | refused | lost (a/b) |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range r.Comparisons {
		var rounds []string
		for _, x := range c.RoundRatios {
			rounds = append(rounds, fmt.Sprintf("%.3f", x))
		}
		fmt.Fprintf(w, "| %s | %.0f spans/s | %.2f | %.2f | %.3f | %s | %s | %s | %s | %d | %d/%d |\n", c.Protocol, c.Rate,
			PerMillion(c.FullCPU, c.FullSpans), PerMillion(c.BaseCPU, c.BaseSpans), c.Ratio(), strings.Join(rounds, ", "),
			verdict(c.Ratio() <= 1.03), mib(c.FullRSS), mib(c.BaseRSS), c.Refused, c.FullLost, c.BaseLost)
	}
	fmt.Fprintf(w, "\nThe per-round ratios show the noise: a difference smaller than their spread is not measured.\n")

	fmt.Fprintf(w, "\n## Highest sustained rate, full pipeline, one collector core (steps of %s)\n\n", o.StepDuration)
	fmt.Fprintf(w, "| protocol | target spans/s | achieved | refused | lost | collector CPU | CPU s / M spans | spans/s per CPU-second | peak RSS | sustained |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Steps {
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %d | %d | %.0f%% | %.2f | %.0f | %s | %v |\n", s.Protocol, s.Load.Target, s.Load.Achieved(),
			s.Load.Refused, s.Lost(), 100*s.CPU/s.Load.Duration.Seconds(), PerMillion(s.CPU, s.Load.Accepted),
			float64(s.Load.Accepted)/max(s.CPU, 1e-9), mib(s.PeakRSS), s.Sustained())
	}
	fmt.Fprintf(w, "\n*collector CPU* is its CPU time over the step's duration; well under 100%% at a step that is not\n"+
		"sustained means the core was shared (see the load average) or the load generator was the limit.\n"+
		"*spans/s per CPU-second* is what a core of its own would carry at that load.\n")
	fmt.Fprintf(w, "\n| protocol | highest sustained (0 refused, 0 lost) | target ≥50000 | peak RSS at it | target ≤200 MiB |\n|---|---|---|---|---|\n")
	for _, proto := range o.Protocols {
		best := r.MaxSustained[proto]
		var rss int64
		for _, s := range r.Steps {
			if s.Protocol == proto && s.Load.Target == best {
				rss = s.PeakRSS
			}
		}
		fmt.Fprintf(w, "| %s | %.0f spans/s | %s | %s | %s |\n", proto, best, verdict(best >= 50000), mib(rss), verdict(rss > 0 && rss <= 200<<20))
	}
	fmt.Fprintf(w, "\nTook %s. Figures from a shared machine are noisy: see bench/README.md.\n", r.Finished.Sub(r.Started).Round(time.Second))
}

// microTable turns `go test -bench` lines into a table of the per-span
// metrics our benchmarks report.
func microTable(out string) string {
	units := []string{"ns/span", "B/span", "allocs/span", "allocs/resource", "MiB", "B/request_id"}
	var b strings.Builder
	b.WriteString("| benchmark | " + strings.Join(units, " | ") + " |\n|---|" + strings.Repeat("---|", len(units)) + "\n")
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		vals := map[string]string{}
		for i := 2; i+1 < len(f); i += 2 {
			vals[f[i+1]] = f[i]
		}
		if vals["ns/span"] == "" && vals["MiB"] == "" {
			continue
		}
		b.WriteString("| " + f[0] + " |")
		for _, u := range units {
			b.WriteString(" " + vals[u] + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}
