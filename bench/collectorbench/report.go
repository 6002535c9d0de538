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

	if o.Runs("compare") {
		r.writeComparisons(w)
	}
	if o.Runs("steps") {
		r.writeSteps(w)
	}
	if o.Runs("durable") {
		r.writeDurable(w)
	}
	fmt.Fprintf(w, "\nTook %s. Figures from a shared machine are noisy: see bench/README.md.\n", r.Finished.Sub(r.Started).Round(time.Second))
}

func (r *Report) writeComparisons(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "## Full pipeline (a) vs without istio_span (b), %d rounds of %s each, interleaved\n\n", o.Rounds, o.PhaseDuration)
	fmt.Fprintf(w, "| workload | protocol | load | (a) CPU s / M spans | (b) CPU s / M spans | ratio (a)/(b) | per-round ratios | target ≤1.03 | (a) peak RSS | (b) peak RSS | refused | lost (a/b) |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range r.Comparisons {
		var rounds []string
		for _, x := range c.RoundRatios {
			rounds = append(rounds, fmt.Sprintf("%.3f", x))
		}
		fmt.Fprintf(w, "| %s | %s | %.0f spans/s | %.2f | %.2f | %.3f | %s | %s | %s | %s | %d | %d/%d |\n", c.Workload, c.Protocol, c.Rate,
			PerMillion(c.FullCPU, c.FullSpans), PerMillion(c.BaseCPU, c.BaseSpans), c.Ratio(), strings.Join(rounds, ", "),
			verdict(c.Ratio() <= 1.03), mib(c.FullRSS), mib(c.BaseRSS), c.Refused, c.FullLost, c.BaseLost)
	}
	fmt.Fprintf(w, "\nThe per-round ratios show the noise: a difference smaller than their spread is not measured.\n"+
		"*Bookinfo mix*: as in the load row above. *orphan-heavy*: half the spans from Bookinfo traffic whose productpage does not forward\n"+
		"traceparent but forwards x-request-id (orphan roots and x-request-id pairs), a quarter each renamed and normalised;\n"+
		"*replayed*: the same pool in every phase, so the full collector has seen every id before (a retrying sender);\n"+
		"*fresh ids*: a new pool per round, every trace id and x-request-id new.\n")
}

func (r *Report) writeSteps(w io.Writer) {
	o := r.Options

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
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// writeDurable is the in-memory vs persistent queue table: the same full
// pipeline (with group_commit), senders as fast as they are answered.
func (r *Report) writeDurable(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "\n## Durable: in-memory vs persistent queue (queue_storage as shipped, and file_storage; fsync), full pipeline with group_commit\n\n")
	fmt.Fprintf(w, "gRPC senders (%d, or as the *senders* column says), each sending its next request as soon as the last is answered,\n"+
		"for %s per phase; the queue variants alternate (%d rounds at the first row's size and cores, 1 elsewhere). *spans/s* is\n"+
		"from the first send to the last delivery at the sink; an OK from the persistent queue means the spans were on disk (fsync).\n"+
		"More concurrent senders (a mesh has one or more per sidecar) make larger groups per queue write.\n\n",
		o.Workers, o.DurablePhase, o.DurableRounds)
	fmt.Fprintf(w, "| senders | cores | spans / request | queue | spans/s | ratio to memory | target | accepted spans/s | CPU s / M spans | answer p50 / p99 | disk writes / span | peak RSS | refused | lost |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	type memKey struct {
		senders, cores, size int
		queue                string
	}
	key := func(d DurableRow, queue string) memKey {
		return memKey{d.Senders, d.Cores, int(d.SpansPerRequest + 0.5), queue}
	}
	memRate := map[memKey]float64{}
	for _, d := range r.Durable {
		if d.Queue == memoryOf(d.Queue) {
			memRate[key(d, d.Queue)] = d.Rate()
		}
	}
	for _, d := range r.Durable {
		ratio, target := "", ""
		if m := memRate[key(d, memoryOf(d.Queue))]; m > 0 && d.Queue != memoryOf(d.Queue) {
			ratio = fmt.Sprintf("%.2f", d.Rate()/m)
			if (d.Queue == QueueJournal || d.Queue == QueueJournalAsShipped) && d.Cores == 1 && d.SpansPerRequest < 10 {
				target = "≥30000 spans/s and ≥0.8: " + verdict(d.Rate() >= 30000 && d.Rate() >= 0.8*m)
			}
		}
		fmt.Fprintf(w, "| %d | %d | %.1f | %s | %.0f | %s | %s | %.0f | %.2f | %s / %s | %.0f B | %s | %d | %d |\n", d.Senders, d.Cores, d.SpansPerRequest, d.Queue,
			d.Rate(), ratio, target, d.AcceptedRate(), PerMillion(d.CPU, d.Received), ms(d.Latency(0.5)), ms(d.Latency(0.99)),
			d.DiskPerSpan(), mib(d.PeakRSS), d.Refused, d.Lost())
	}
	pin := "taskset -c " + o.CollectorCPUs
	if o.CollectorCPUs == "" {
		pin = "not pinned"
	}
	fmt.Fprintf(w, "\n1 core: GOMAXPROCS=1, %s. 2 cores: GOMAXPROCS=2, taskset -c %s; when that is every CPU of the machine,\n"+
		"the senders and the sink float over the same CPUs as the collector, so that row is a lower bound. Requests of more than one Envoy export\n"+
		"are several proxies' exports in one request (one resource each), as a batching agent in front would send them.\n"+
		"The other rows run the pipeline alone; the \"+ otlp_guard and metrics\" rows add what the shipped config runs beside it\n"+
		"(otlp_guard on the receivers, internal metrics on a Prometheus endpoint), with the ratio against the memory row that has them too.\n",
		pin, cpuList(2))
	r.writeCostModel(w)
	if len(r.DurableLatency) > 0 {
		fmt.Fprintf(w, "\nAnswer times at a fixed %.0f spans/s (first row's size and cores): what the persistent queue adds per request.\n\n",
			r.DurableLatency[0].Rate)
		fmt.Fprintf(w, "| queue | achieved spans/s | p50 | p99 | added p50 / p99 vs its memory variant |\n|---|---|---|---|---|\n")
		mem := map[string]LatencyRow{}
		for _, l := range r.DurableLatency {
			if l.Queue == memoryOf(l.Queue) {
				mem[l.Queue] = l
			}
		}
		for _, l := range r.DurableLatency {
			added := ""
			if m, ok := mem[memoryOf(l.Queue)]; ok && l.Queue != m.Queue {
				added = ms(l.P50-m.P50) + " / " + ms(l.P99-m.P99)
			}
			fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s |\n", l.Queue, l.Achieved, ms(l.P50), ms(l.P99), added)
		}
	}
}

// writeCostModel splits the in-memory pipeline's CPU at one core into a
// cost per request and a cost per span, from the rows of two request
// sizes (CPU per span = perSpan + perRequest / spans per request), and
// says what that predicts for other request sizes: why the "spans per
// CPU-second" of a workload depends on how many spans its requests carry.
func (r *Report) writeCostModel(w io.Writer) {
	var small, large *DurableRow
	for i := range r.Durable {
		d := &r.Durable[i]
		if d.Queue != QueueMemory || d.Cores != 1 || d.Senders != r.Options.Workers || d.Received == 0 {
			continue
		}
		if small == nil || d.SpansPerRequest < small.SpansPerRequest {
			small = d
		}
		if d.SpansPerRequest < 100 && d.SpansPerRequest > small.SpansPerRequest*4 {
			large = d
		}
	}
	if small == nil || large == nil {
		return
	}
	perReq, perSpan, ok := CostModel(small.SpansPerRequest, PerMillion(small.CPU, small.Received),
		large.SpansPerRequest, PerMillion(large.CPU, large.Received))
	if !ok {
		return
	}
	fmt.Fprintf(w, "\nCost per request and per span (in-memory queue, one core, from the %.1f- and %.1f-span rows): %.1f CPU µs per request\n"+
		"plus %.1f CPU µs per span. Predicted spans per CPU-second: %.0f at 5.5 spans per request (an Envoy export), %.0f at 8\n"+
		"(the size of the propagated requests measured from outside in issue 15), %.0f at 50: most of the difference between\n"+
		"workloads' spans per CPU-second is their spans per request; the rest is their span mix (see bench/README.md).\n",
		small.SpansPerRequest, large.SpansPerRequest, perReq, perSpan,
		1e6/(perSpan+perReq/5.5), 1e6/(perSpan+perReq/8), 1e6/(perSpan+perReq/50))
}

// CostModel solves cpu = perSpan + perRequest/size for two (size, CPU µs
// per span) points; ok is false when they do not give positive costs.
func CostModel(size1, cpu1, size2, cpu2 float64) (perRequest, perSpan float64, ok bool) {
	d := 1/size1 - 1/size2
	if d == 0 {
		return 0, 0, false
	}
	perRequest = (cpu1 - cpu2) / d
	perSpan = cpu1 - perRequest/size1
	return perRequest, perSpan, perRequest > 0 && perSpan > 0
}

// microTable turns `go test -bench` lines into a table of the per-span
// metrics our benchmarks report.
func microTable(out string) string {
	units := []string{"ns/span", "B/span", "allocs/span", "allocs/resource", "MiB", "B/request_id", "decode_ns/span"}
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
