package collectorbench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Queue variants of the durable comparison: the same full pipeline
// (memory_limiter, istio_span, group_commit) with each sending queue.
const (
	QueueMemory = "memory"
	// QueueJournal is the shipped persistent queue: queue_storage (our
	// journal), fsync.
	QueueJournal = "queue_storage (shipped)"
	// QueueFile is the persistent queue on contrib's file_storage (bbolt),
	// fsync, as shipped before queue_storage.
	QueueFile = "file_storage"
	// QueueJournalNoGroupCommit is the shipped queue without group_commit:
	// one synced queue write per request.
	QueueJournalNoGroupCommit = "queue_storage, no group_commit"
	// QueueMemoryAsShipped and QueueJournalAsShipped add what the shipped
	// config runs beside the pipeline (otlp_guard, internal metrics), which
	// the other variants leave out to measure the pipeline alone.
	QueueMemoryAsShipped  = "memory, + otlp_guard and metrics"
	QueueJournalAsShipped = "queue_storage, + otlp_guard and metrics (as shipped)"
)

// asShipped reports whether a variant runs with CollectorOptions.AsShipped.
func asShipped(variant string) bool {
	return variant == QueueMemoryAsShipped || variant == QueueJournalAsShipped
}

// memoryOf is the in-memory variant a variant's ratio is taken against.
func memoryOf(variant string) string {
	if asShipped(variant) {
		return QueueMemoryAsShipped
	}
	return QueueMemory
}

// storageOf is the sending queue storage of a variant: "memory", "journal"
// or "file" (CollectorOptions.Queue).
func storageOf(variant string) string {
	switch variant {
	case QueueJournal, QueueJournalNoGroupCommit, QueueJournalAsShipped:
		return "journal"
	case QueueFile:
		return "file"
	}
	return "memory"
}

// DurableRow is one queue variant at one (cores, request size), summed over
// its rounds: the senders send as fast as they are answered.
type DurableRow struct {
	Senders         int
	Cores           int
	SpansPerRequest float64
	Queue           string
	Accepted        int64 // spans answered OK
	Received        int64 // spans the sink got
	Refused         int64
	CPU             float64       // collector CPU seconds, load and drain
	Wall            time.Duration // first send to last delivery (or drain timeout)
	LoadTime        time.Duration // the senders' time
	PeakRSS         int64
	DiskWrites      int64           // bytes the collector wrote to disk (/proc/<pid>/io write_bytes)
	Latencies       []time.Duration // answer times of accepted requests, sorted
}

// DiskPerSpan is bytes written to disk per delivered span.
func (r DurableRow) DiskPerSpan() float64 { return float64(r.DiskWrites) / max(float64(r.Received), 1) }

// Rate is spans/s from the first send to the last delivery.
func (r DurableRow) Rate() float64 { return float64(r.Received) / max(r.Wall.Seconds(), 1e-9) }

// AcceptedRate is spans/s answered OK while the senders ran.
func (r DurableRow) AcceptedRate() float64 {
	return float64(r.Accepted) / max(r.LoadTime.Seconds(), 1e-9)
}

// Lost is accepted spans the sink never got (within the drain).
func (r DurableRow) Lost() int64 { return max(r.Accepted-r.Received, 0) }

// Latency is the q-quantile of the answer times.
func (r DurableRow) Latency(q float64) time.Duration {
	return LoadResult{Latencies: r.Latencies}.Latency(q)
}

// LatencyRow is the answer time of one queue variant at a fixed load.
type LatencyRow struct {
	Queue    string
	Rate     float64
	P50, P99 time.Duration
	Achieved float64
}

type durableConfig struct {
	cores    int
	size     int
	variants []string
	rounds   int
	latency  bool // also measure answer times at DurableLatencyRate
	senders  int
}

// runDurable is the durable section: in-memory vs persistent queue (fsync),
// alternating, at saturation, by cores and by request size.
func runDurable(ctx context.Context, o Options, dir string, logf func(string, ...any)) ([]DurableRow, []LatencyRow, error) {
	var configs []durableConfig
	for i, cores := range o.DurableCores {
		for j, size := range o.DurableSizes {
			if i > 0 && j > 0 {
				continue // cores are compared at the first (Envoy) size only
			}
			c := durableConfig{cores: cores, size: size, variants: []string{QueueMemory, QueueJournal, QueueFile}, rounds: 1, senders: o.Workers}
			if i == 0 && j == 0 {
				c.variants = append(c.variants, QueueJournalNoGroupCommit, QueueMemoryAsShipped, QueueJournalAsShipped)
				c.rounds, c.latency = o.DurableRounds, true
			}
			configs = append(configs, c)
		}
	}
	for _, n := range o.DurableSenders {
		if n != o.Workers && len(o.DurableCores) > 0 && len(o.DurableSizes) > 0 {
			// More concurrent senders (a mesh has one per sidecar) at the
			// first cores and size: larger groups per queue write.
			configs = append(configs, durableConfig{cores: o.DurableCores[0], size: o.DurableSizes[0],
				variants: []string{QueueMemory, QueueJournal, QueueFile}, rounds: 1, senders: n})
		}
	}
	var rows []DurableRow
	var lat []LatencyRow
	for _, dc := range configs {
		r, l, err := runDurableConfig(ctx, o, dir, dc, logf)
		rows = append(rows, r...)
		lat = append(lat, l...)
		if err != nil {
			return rows, lat, err
		}
	}
	return rows, lat, nil
}

func runDurableConfig(ctx context.Context, o Options, dir string, dc durableConfig, logf func(string, ...any)) ([]DurableRow, []LatencyRow, error) {
	pool, err := SizedPool(o.PoolSpans, dc.size, 7)
	if err != nil {
		return nil, nil, err
	}
	total := 0
	for _, q := range pool {
		total += q.Spans
	}
	perReq := float64(total) / float64(len(pool))
	cpus := o.CollectorCPUs
	if dc.cores > 1 {
		cpus = cpuList(dc.cores)
		if o.CollectorCPUs != "" && dc.cores >= runtime.NumCPU() {
			// No CPU is left for the senders and the sink: rather than
			// squeeze them onto the CPUs the 1-core phases kept free,
			// let them float over all, as the collector's threads do.
			if err := unpinSelf(); err != nil {
				logf("could not unpin the benchmark: %v", err)
			}
			defer func() {
				if err := pinSelfAwayFrom(o.CollectorCPUs); err != nil {
					logf("could not move the benchmark off CPU %s again: %v", o.CollectorCPUs, err)
				}
			}()
		}
	}
	type target struct {
		col  *Collector
		sink *Sink
	}
	targets := map[string]target{}
	for i, v := range dc.variants {
		s, err := StartSink()
		if err != nil {
			return nil, nil, err
		}
		defer s.Stop()
		queue := storageOf(v)
		name := fmt.Sprintf("durable-%dc-%ds-%dw-%d", dc.cores, dc.size, dc.senders, i)
		c, err := StartCollector(ctx, Full, CollectorOptions{Binary: o.Binary, CPUs: cpus, GOMAXPROCS: dc.cores,
			Dir: dir, SinkAddr: s.Endpoint(), Queue: queue, Compression: o.Compression,
			NoGroupCommit: v == QueueJournalNoGroupCommit, AsShipped: asShipped(v), Name: name})
		if err != nil {
			return nil, nil, err
		}
		defer c.Stop()
		targets[v] = target{c, s}
	}
	phase := func(v string, rate float64, d time.Duration) (DurableRow, LoadResult, error) {
		t := targets[v]
		r, err := NewReplayer("grpc", t.col.GRPC, pool, dc.senders)
		if err != nil {
			return DurableRow{}, LoadResult{}, err
		}
		defer r.Close()
		resetPeakRSS(t.col.pid())
		cpu0, err := t.col.CPUSeconds()
		if err != nil {
			return DurableRow{}, LoadResult{}, err
		}
		s0 := t.sink.Spans()
		w0, _ := t.col.WriteBytes()
		start := time.Now()
		lr := r.Load(ctx, rate, d)
		for deadline := time.Now().Add(o.DurableDrain); t.sink.Spans()-s0 < lr.Accepted && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		wall := time.Since(start)
		cpu1, err := t.col.CPUSeconds()
		if err != nil {
			return DurableRow{}, LoadResult{}, fmt.Errorf("%s collector: %w\n%s", v, err, t.col.Logs())
		}
		rss, _ := t.col.PeakRSS()
		w1, _ := t.col.WriteBytes()
		row := DurableRow{DiskWrites: w1 - w0, Senders: dc.senders, Cores: dc.cores, SpansPerRequest: perReq, Queue: v, Accepted: lr.Accepted,
			Received: t.sink.Spans() - s0, Refused: lr.Refused, CPU: cpu1 - cpu0, Wall: wall, LoadTime: lr.Duration,
			PeakRSS: rss, Latencies: lr.Latencies}
		return row, lr, ctx.Err()
	}

	sum := map[string]*DurableRow{}
	for round := range dc.rounds {
		order := slices.Clone(dc.variants)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, v := range order {
			row, _, err := phase(v, 1e8, o.DurablePhase)
			if err != nil {
				return nil, nil, err
			}
			logf("durable %d core(s) %4.0f spans/req %-30s %7.0f spans/s (accepted %7.0f/s) cpu %.1fs p50 %s p99 %s disk %.0f B/span lost %d refused %d",
				dc.cores, perReq, v, row.Rate(), row.AcceptedRate(), row.CPU, row.Latency(0.5).Round(10*time.Microsecond),
				row.Latency(0.99).Round(10*time.Microsecond), row.DiskPerSpan(), row.Lost(), row.Refused)
			if s, ok := sum[v]; ok {
				s.Accepted += row.Accepted
				s.Received += row.Received
				s.Refused += row.Refused
				s.CPU += row.CPU
				s.Wall += row.Wall
				s.LoadTime += row.LoadTime
				s.PeakRSS = max(s.PeakRSS, row.PeakRSS)
				s.DiskWrites += row.DiskWrites
				s.Latencies = append(s.Latencies, row.Latencies...)
			} else {
				sum[v] = &row
			}
		}
	}
	var rows []DurableRow
	for _, v := range dc.variants {
		slices.Sort(sum[v].Latencies)
		rows = append(rows, *sum[v])
	}
	var lat []LatencyRow
	if dc.latency {
		for _, v := range dc.variants {
			_, lr, err := phase(v, o.DurableLatencyRate, o.DurablePhase)
			if err != nil {
				return rows, lat, err
			}
			lat = append(lat, LatencyRow{Queue: v, Rate: o.DurableLatencyRate, P50: lr.Latency(0.5), P99: lr.Latency(0.99), Achieved: lr.Achieved()})
			logf("durable latency at %.0f spans/s, %-30s p50 %s p99 %s (achieved %.0f/s)", o.DurableLatencyRate, v,
				lr.Latency(0.5).Round(10*time.Microsecond), lr.Latency(0.99).Round(10*time.Microsecond), lr.Achieved())
		}
	}
	return rows, lat, nil
}

// cpuList is "0,1,...,n-1", capped at the machine's CPUs.
func cpuList(n int) string {
	var s []string
	for i := range min(n, runtime.NumCPU()) {
		s = append(s, strconv.Itoa(i))
	}
	return strings.Join(s, ",")
}
