// Package collectorbench is the end-to-end benchmark of the built collector: a
// fast replayer sends pre-encoded Bookinfo exports, a lean OTLP sink
// receives what the collector forwards, and /proc says what the collector
// spent. See bench/README.md.
package collectorbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otelcol-istio/otelcol-istio/bench/workload"
)

// Options configure a run. Zero fields take the defaults of DefaultOptions.
type Options struct {
	Binary    string
	Protocols []string // "grpc", "http"
	// CompareRate (spans/s) is the fixed load at which full and baseline are
	// compared, Rounds times each, PhaseDuration each time, interleaved.
	CompareRate   float64
	PhaseDuration time.Duration
	Rounds        int
	// MaxRateSteps (spans/s, ascending) are tried StepDuration each, on the
	// full pipeline, until one is not sustained.
	MaxRateSteps []float64
	StepDuration time.Duration
	// Drain is how long to wait for the sink to get every accepted span.
	Drain      time.Duration
	Workers    int
	PoolSpans  int
	GOMAXPROCS int
	// CollectorCPUs pins the collectors (taskset -c); the benchmark process
	// moves itself to the other CPUs. Empty: no pinning.
	CollectorCPUs string
	// Queue is the exporter's sending queue: "memory", "journal" or "file"
	// (CollectorOptions.Queue).
	Queue string
	// Compression is the exporter's compression (shipped: gzip).
	Compression string
	// Ceiling measures the replayer against the sink alone first.
	Ceiling bool
	// OrphanHeavy adds the orphan-heavy workloads (replayed and fresh ids)
	// to the compare section.
	OrphanHeavy bool
	// Sections to run, of "compare" (full vs baseline), "steps" (highest
	// sustained rate) and "durable" (in-memory vs persistent queue).
	Sections []string
	// The durable section: senders send as fast as they are answered, for
	// DurablePhase, alternating the queue variants DurableRounds times at
	// the first of DurableCores and DurableSizes (spans per request), once
	// at the other sizes and core counts; then answer times at
	// DurableLatencyRate spans/s. DurableDrain bounds the wait for delivery.
	DurableCores []int
	DurableSizes []int
	// DurableSenders adds rows at the first cores and size with other
	// numbers of concurrent senders than Workers.
	DurableSenders     []int
	DurablePhase       time.Duration
	DurableRounds      int
	DurableLatencyRate float64
	DurableDrain       time.Duration
	Log                io.Writer
}

// Runs says whether a section is to run.
func (o Options) Runs(section string) bool { return slices.Contains(o.Sections, section) }

// DefaultOptions is what `make bench` runs: about five minutes.
func DefaultOptions() Options {
	cpus := ""
	if runtime.NumCPU() >= 2 {
		cpus = "0"
	}
	return Options{
		Protocols:      []string{"grpc", "http"},
		CompareRate:    20000,
		PhaseDuration:  8 * time.Second,
		Rounds:         3,
		MaxRateSteps:   []float64{20000, 30000, 40000, 50000, 60000, 70000, 80000, 100000, 120000, 150000},
		StepDuration:   5 * time.Second,
		Drain:          3 * time.Second,
		Workers:        64,
		Queue:          "memory",
		Compression:    "gzip",
		PoolSpans:      60000,
		GOMAXPROCS:     1,
		CollectorCPUs:  cpus,
		Ceiling:        true,
		OrphanHeavy:    true,
		Sections:       []string{"compare", "steps", "durable"},
		DurableCores:   []int{1, 2},
		DurableSizes:   []int{5, 50, 512},
		DurableSenders: []int{256},
		DurablePhase:   6 * time.Second,
		DurableRounds:  2,
		// Well under the persistent queue's rate, so the answer times are
		// the queue's, not a backlog's.
		DurableLatencyRate: 10000,
		DurableDrain:       30 * time.Second,
		Log:                os.Stderr,
	}
}

// Phase is one load phase against one collector.
type Phase struct {
	Protocol string
	Pipeline Pipeline
	Load     LoadResult
	Received int64 // spans the sink got from this phase
	CPU      float64
	PeakRSS  int64 // VmHWM during the phase (reset before it when the kernel allows)
}

// Lost is accepted spans that never reached the sink.
func (p Phase) Lost() int64 { return max(p.Load.Accepted-p.Received, 0) }

// Sustained says the collector kept up: nothing refused or lost, and the
// replayer got at least 97% of the target through.
func (p Phase) Sustained() bool {
	return p.Load.Refused == 0 && p.Lost() == 0 && p.Load.Achieved() >= 0.97*p.Load.Target
}

// Comparison is full vs baseline at one load, summed over the rounds.
type Comparison struct {
	Workload             string // one of the Workload* names
	Protocol             string
	Rate                 float64
	FullCPU, BaseCPU     float64 // seconds
	FullSpans, BaseSpans int64   // accepted
	FullRSS, BaseRSS     int64
	FullLost, BaseLost   int64
	Refused              int64
	// RoundRatios is (a)/(b) per round: their spread shows the noise.
	RoundRatios []float64
}

// PerMillion is CPU seconds per million spans.
func PerMillion(cpu float64, spans int64) float64 {
	if spans == 0 {
		return 0
	}
	return cpu / float64(spans) * 1e6
}

// Ratio is (a)/(b) of CPU per span.
func (c Comparison) Ratio() float64 {
	b := PerMillion(c.BaseCPU, c.BaseSpans)
	if b == 0 {
		return 0
	}
	return PerMillion(c.FullCPU, c.FullSpans) / b
}

// Report is everything a run measured.
type Report struct {
	Started, Finished time.Time
	Machine           Machine
	Options           Options
	Ceiling           map[string]LoadResult // protocol -> the replayer straight into a sink
	Comparisons       []Comparison
	Steps             []Phase
	MaxSustained      map[string]float64 // protocol -> spans/s
	Durable           []DurableRow
	DurableLatency    []LatencyRow
	PoolRequests      int
	PoolSpansPerReq   float64
}

// Run runs the whole benchmark.
func Run(ctx context.Context, o Options) (*Report, error) {
	d := DefaultOptions()
	if o.Log == nil {
		o.Log = io.Discard
	}
	if len(o.Protocols) == 0 {
		o.Protocols = d.Protocols
	}
	setDefault(&o.CompareRate, d.CompareRate)
	setDefault(&o.PhaseDuration, d.PhaseDuration)
	setDefault(&o.Rounds, d.Rounds)
	setDefault(&o.StepDuration, d.StepDuration)
	setDefault(&o.Drain, d.Drain)
	setDefault(&o.Workers, d.Workers)
	setDefault(&o.PoolSpans, d.PoolSpans)
	setDefault(&o.Queue, d.Queue)
	setDefault(&o.Compression, d.Compression)
	if len(o.Sections) == 0 {
		o.Sections = d.Sections
	}
	if len(o.DurableCores) == 0 {
		o.DurableCores = d.DurableCores
	}
	if len(o.DurableSizes) == 0 {
		o.DurableSizes = d.DurableSizes
	}
	setDefault(&o.DurablePhase, d.DurablePhase)
	setDefault(&o.DurableRounds, d.DurableRounds)
	setDefault(&o.DurableLatencyRate, d.DurableLatencyRate)
	setDefault(&o.DurableDrain, d.DurableDrain)
	rep := &Report{Started: time.Now(), Options: o, MaxSustained: map[string]float64{}}
	rep.Machine = ReadMachine()
	logf := func(format string, a ...any) { fmt.Fprintf(o.Log, "collectorbench: "+format+"\n", a...) }

	if o.CollectorCPUs != "" {
		if err := pinSelfAwayFrom(o.CollectorCPUs); err != nil {
			logf("could not move the benchmark off CPU %s: %v", o.CollectorCPUs, err)
		}
	}
	pool, poolErr := Pool(o.PoolSpans, 1)
	if poolErr != nil {
		return nil, poolErr
	}
	total := 0
	for _, q := range pool {
		total += q.Spans
	}
	rep.PoolRequests, rep.PoolSpansPerReq = len(pool), float64(total)/float64(len(pool))
	logf("pool: %d pre-encoded exports, %.1f spans each", len(pool), rep.PoolSpansPerReq)

	dir, dirErr := os.MkdirTemp("", "collectorbench")
	if dirErr != nil {
		return nil, dirErr
	}
	defer os.RemoveAll(dir)
	sinks := map[Pipeline]*Sink{}
	cols := map[Pipeline]*Collector{}
	for _, p := range []Pipeline{Full, Baseline} {
		s, err := StartSink()
		if err != nil {
			return nil, err
		}
		defer s.Stop()
		sinks[p] = s
		c, err := StartCollector(ctx, p, CollectorOptions{Binary: o.Binary, CPUs: o.CollectorCPUs, GOMAXPROCS: o.GOMAXPROCS,
			Dir: dir, SinkAddr: s.Endpoint(), Queue: o.Queue, Compression: o.Compression})
		if err != nil {
			return nil, err
		}
		defer c.Stop()
		cols[p] = c
	}

	if o.Ceiling {
		rep.Ceiling = map[string]LoadResult{}
		for _, proto := range o.Protocols {
			ep := sinks[Full].Endpoint()
			if proto == "http" {
				ep = sinks[Full].HTTPEndpoint()
			}
			r, err := NewReplayer(proto, ep, pool, o.Workers)
			if err != nil {
				return nil, err
			}
			lr := r.Load(ctx, 1e8, 2*time.Second)
			r.Close()
			rep.Ceiling[proto] = lr
			logf("replayer ceiling (%s straight into a sink): %.0f spans/s", proto, lr.Achieved())
		}
	}

	phase := func(proto string, p Pipeline, pool []Request, rate float64, dur time.Duration) (Phase, error) {
		c, s := cols[p], sinks[p]
		r, err := NewReplayer(proto, c.Endpoint(proto), pool, o.Workers)
		if err != nil {
			return Phase{}, err
		}
		defer r.Close()
		resetPeakRSS(c.pid())
		cpu0, err := c.CPUSeconds()
		if err != nil {
			return Phase{}, err
		}
		s0 := s.Spans()
		lr := r.Load(ctx, rate, dur)
		for deadline := time.Now().Add(o.Drain); s.Spans()-s0 < lr.Accepted && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		cpu1, err := c.CPUSeconds()
		if err != nil {
			return Phase{}, fmt.Errorf("%s collector: %w\n%s", p, err, c.Logs())
		}
		rss, _ := c.PeakRSS()
		ph := Phase{Protocol: proto, Pipeline: p, Load: lr, Received: s.Spans() - s0, CPU: cpu1 - cpu0, PeakRSS: rss}
		logf("%-4s %-8s target %7.0f/s achieved %7.0f/s refused %d lost %d cpu %.2fs rss %.0fMiB",
			proto, p, rate, lr.Achieved(), lr.Refused, ph.Lost(), ph.CPU, float64(rss)/(1<<20))
		return ph, ctx.Err()
	}

	if o.Runs("compare") {
		cases, err := compareCases(o, pool)
		if err != nil {
			return rep, err
		}
		for _, cc := range cases {
			for _, proto := range cc.protocols {
				cmp, err := compare(o, cc, proto, phase)
				rep.Comparisons = append(rep.Comparisons, cmp)
				if err != nil {
					return rep, err
				}
				logf("%s, %s: full %.2f, baseline %.2f CPU s per million spans, ratio %.3f", cc.workload, proto,
					PerMillion(cmp.FullCPU, cmp.FullSpans), PerMillion(cmp.BaseCPU, cmp.BaseSpans), cmp.Ratio())
			}
		}
	}

	for _, proto := range o.Protocols {
		if !o.Runs("steps") {
			break
		}
		last := 0.0
		for _, rate := range o.MaxRateSteps {
			ph, err := phase(proto, Full, pool, rate, o.StepDuration)
			if err != nil {
				return rep, err
			}
			rep.Steps = append(rep.Steps, ph)
			if !ph.Sustained() {
				// One more step halfway back, for a finer answer.
				if mid := (last + rate) / 2; last > 0 && mid-last >= 2500 {
					ph, err := phase(proto, Full, pool, mid, o.StepDuration)
					if err != nil {
						return rep, err
					}
					rep.Steps = append(rep.Steps, ph)
					if ph.Sustained() {
						rep.MaxSustained[proto] = mid
					}
				}
				break
			}
			last = rate
			rep.MaxSustained[proto] = rate
		}
	}
	if o.Runs("durable") {
		// The two collectors above stay idle meanwhile.
		var durableErr error
		rep.Durable, rep.DurableLatency, durableErr = runDurable(ctx, o, dir, logf)
		if durableErr != nil {
			return rep, durableErr
		}
	}
	rep.Finished = time.Now()
	rep.Machine.LoadAfter = loadAvg()
	return rep, nil
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// resetPeakRSS clears VmHWM (Linux >= 4.0: write 5 to clear_refs), so each
// phase reports its own peak. Without permission the peak is since start.
func resetPeakRSS(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// pinSelfAwayFrom moves every thread of this process to the CPUs not in
// cpus (a taskset list such as "0" or "0,2"); threads made later inherit it.
func pinSelfAwayFrom(cpus string) error {
	taken := map[int]bool{}
	for _, f := range strings.Split(cpus, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("CPU list %q: only comma-separated numbers are supported", cpus)
		}
		taken[n] = true
	}
	var set unix.CPUSet
	for i := range runtime.NumCPU() {
		if !taken[i] {
			set.Set(i)
		}
	}
	if set.Count() == 0 {
		return fmt.Errorf("no CPU left besides %s", cpus)
	}
	return pinSelf(&set)
}

// unpinSelf lets every thread of this process run on every CPU again.
func unpinSelf() error {
	var set unix.CPUSet
	for i := range runtime.NumCPU() {
		set.Set(i)
	}
	return pinSelf(&set)
}

func pinSelf(set *unix.CPUSet) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		if err := unix.SchedSetaffinity(tid, set); err != nil {
			return err
		}
	}
	return nil
}

// The workloads on which full and baseline are compared.
const (
	// WorkloadMix is the Bookinfo mix (workload.Mix), the same pool replayed
	// in every phase.
	WorkloadMix = "Bookinfo mix, replayed"
	// WorkloadOrphansReplayed is workload.OrphanHeavy, the same pool replayed
	// in every phase: the full collector has seen every trace id and
	// x-request-id before, as with a sender that retries.
	WorkloadOrphansReplayed = "orphan-heavy, replayed"
	// WorkloadOrphansFresh is workload.OrphanHeavy with a new pool, large
	// enough for the phase, in every round: every id is new to the full
	// collector.
	WorkloadOrphansFresh = "orphan-heavy, fresh ids"
)

type compareCase struct {
	workload  string
	protocols []string
	pool      func(round int) ([]Request, error)
}

// compareCases are the workloads of the compare section: the mix on every
// protocol, the orphan-heavy ones on gRPC (istio_span's cost does not
// depend on the transport; the mix's rows show the transports' own).
func compareCases(o Options, mix []Request) ([]compareCase, error) {
	cases := []compareCase{{WorkloadMix, o.Protocols, func(int) ([]Request, error) { return mix, nil }}}
	if !o.OrphanHeavy {
		return cases, nil
	}
	replayed, err := PoolOf(workload.OrphanHeavy, o.PoolSpans, 11)
	if err != nil {
		return nil, err
	}
	fresh := int(o.CompareRate*o.PhaseDuration.Seconds()*1.1) + 1000
	return append(cases,
		compareCase{WorkloadOrphansReplayed, []string{"grpc"}, func(int) ([]Request, error) { return replayed, nil }},
		compareCase{WorkloadOrphansFresh, []string{"grpc"}, func(round int) ([]Request, error) {
			return PoolOf(workload.OrphanHeavy, fresh, 1000+uint64(round))
		}},
	), nil
}

// compare runs full and baseline alternately, o.Rounds times each.
func compare(o Options, cc compareCase, proto string,
	phase func(string, Pipeline, []Request, float64, time.Duration) (Phase, error),
) (Comparison, error) {
	cmp := Comparison{Workload: cc.workload, Protocol: proto, Rate: o.CompareRate}
	for round := range o.Rounds {
		pool, err := cc.pool(round)
		if err != nil {
			return cmp, err
		}
		order := []Pipeline{Full, Baseline}
		if round%2 == 1 {
			order = []Pipeline{Baseline, Full}
		}
		perSpan := map[Pipeline]float64{}
		for _, p := range order {
			ph, err := phase(proto, p, pool, o.CompareRate, o.PhaseDuration)
			if err != nil {
				return cmp, err
			}
			perSpan[p] = PerMillion(ph.CPU, ph.Load.Accepted)
			cmp.Refused += ph.Load.Refused
			if p == Full {
				cmp.FullCPU += ph.CPU
				cmp.FullSpans += ph.Load.Accepted
				cmp.FullRSS = max(cmp.FullRSS, ph.PeakRSS)
				cmp.FullLost += ph.Lost()
			} else {
				cmp.BaseCPU += ph.CPU
				cmp.BaseSpans += ph.Load.Accepted
				cmp.BaseRSS = max(cmp.BaseRSS, ph.PeakRSS)
				cmp.BaseLost += ph.Lost()
			}
		}
		if perSpan[Baseline] > 0 {
			cmp.RoundRatios = append(cmp.RoundRatios, perSpan[Full]/perSpan[Baseline])
		}
	}
	return cmp, nil
}
