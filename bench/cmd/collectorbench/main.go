// Command collectorbench is the end-to-end half of `make bench`: it runs the built
// collector under replayed Bookinfo load, writes a Markdown table with
// machine info to -out, and prints it. See bench/README.md.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/otelcol-istio/otelcol-istio/bench/collectorbench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "collectorbench:", err)
		os.Exit(1)
	}
}

func run() error {
	d := collectorbench.DefaultOptions()
	o := d
	binary := flag.String("binary", "bin/otelcol-istio", "the collector binary")
	out := flag.String("out", "bench/results", "directory for the results table")
	micro := flag.String("micro", "", "go test -bench output to include (optional)")
	protocols := flag.String("protocols", strings.Join(d.Protocols, ","), "OTLP transports to test")
	steps := flag.String("steps", joinRates(d.MaxRateSteps), "rates (spans/s) for the highest-sustained-rate search")
	flag.Float64Var(&o.CompareRate, "compare-rate", d.CompareRate, "spans/s at which full and baseline are compared")
	flag.DurationVar(&o.PhaseDuration, "phase", d.PhaseDuration, "duration of each comparison phase")
	flag.IntVar(&o.Rounds, "rounds", d.Rounds, "comparison rounds (full and baseline each)")
	flag.DurationVar(&o.StepDuration, "step", d.StepDuration, "duration of each rate step")
	flag.IntVar(&o.Workers, "workers", d.Workers, "concurrent senders")
	flag.IntVar(&o.GOMAXPROCS, "gomaxprocs", d.GOMAXPROCS, "GOMAXPROCS of the collector (0: Go's default)")
	flag.StringVar(&o.CollectorCPUs, "cpus", d.CollectorCPUs, "taskset CPU list for the collector (empty: no pinning)")
	flag.StringVar(&o.Queue, "queue", d.Queue, "exporter sending queue: memory, journal (persistent on queue_storage, fsync, as shipped) or file (persistent on file_storage, fsync)")
	flag.DurationVar(&o.Drain, "drain", d.Drain, "how long to wait for the sink to get every accepted span (longer for -queue file)")
	flag.StringVar(&o.Compression, "compression", d.Compression, "exporter compression: gzip (as shipped), zstd, snappy, none")
	flag.BoolVar(&o.OrphanHeavy, "orphan-heavy", d.OrphanHeavy, "compare section: also compare on orphan-heavy traffic (replayed and fresh ids, gRPC)")
	sections := flag.String("sections", strings.Join(d.Sections, ","), "sections to run: compare, steps, durable")
	durableCores := flag.String("durable-cores", joinInts(d.DurableCores), "durable section: collector cores (GOMAXPROCS and CPUs) to compare")
	durableSizes := flag.String("durable-sizes", joinInts(d.DurableSizes), "durable section: spans per request to compare")
	durableSenders := flag.String("durable-senders", joinInts(d.DurableSenders), "durable section: other numbers of concurrent senders than -workers, at the first cores and size (empty: none)")
	flag.DurationVar(&o.DurablePhase, "durable-phase", d.DurablePhase, "durable section: duration of each saturation phase")
	flag.IntVar(&o.DurableRounds, "durable-rounds", d.DurableRounds, "durable section: rounds at the first size and core count")
	flag.Float64Var(&o.DurableLatencyRate, "durable-latency-rate", d.DurableLatencyRate, "durable section: spans/s at which answer times are compared")
	flag.DurationVar(&o.DurableDrain, "durable-drain", d.DurableDrain, "durable section: how long to wait for every accepted span to be delivered")
	flag.Parse()

	o.Sections = strings.Split(*sections, ",")
	var parseErr error
	if o.DurableCores, parseErr = parseInts(*durableCores); parseErr != nil {
		return fmt.Errorf("-durable-cores: %w", parseErr)
	}
	if o.DurableSizes, parseErr = parseInts(*durableSizes); parseErr != nil {
		return fmt.Errorf("-durable-sizes: %w", parseErr)
	}
	o.DurableSenders = nil
	if *durableSenders != "" {
		if o.DurableSenders, parseErr = parseInts(*durableSenders); parseErr != nil {
			return fmt.Errorf("-durable-senders: %w", parseErr)
		}
	}

	o.Binary = *binary
	o.Protocols = strings.Split(*protocols, ",")
	o.MaxRateSteps = nil
	for _, s := range strings.Split(*steps, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("-steps: %q is not a number", s)
		}
		o.MaxRateSteps = append(o.MaxRateSteps, v)
	}
	var microOut []byte
	if *micro != "" {
		var err error
		if microOut, err = os.ReadFile(*micro); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := collectorbench.Run(ctx, o)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	rep.Write(&buf, string(microOut))
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	path := filepath.Join(*out, "bench-"+rep.Started.UTC().Format("20060102T150405Z")+".md")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return err
	}
	_ = os.WriteFile(filepath.Join(*out, "latest.md"), buf.Bytes(), 0o644)
	fmt.Printf("\n%s\nWritten to %s\n", buf.String(), path)
	return nil
}

func joinRates(rs []float64) string {
	var s []string
	for _, r := range rs {
		s = append(s, strconv.FormatFloat(r, 'f', -1, 64))
	}
	return strings.Join(s, ",")
}

func joinInts(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.Itoa(x))
	}
	return strings.Join(s, ",")
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
