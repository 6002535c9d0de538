// Package workload builds the span batches the benchmarks feed istio_span
// and the collector: simulated Bookinfo traffic (e2e/meshsim) in four kinds
// that cost the processor differently, mixed as a busy mesh would send them.
package workload

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-istio/otelcol-istio/e2e/meshsim"
)

// Kind is one kind of span, by what istio_span does with it.
type Kind string

const (
	// Renamed: Istio proxy spans whose service.name is not the workload's
	// canonical <name>.<namespace> (CANONICAL_NAME_ONLY and
	// OTEL_SEMANTIC_CONVENTIONS proxies): the resource is renamed.
	Renamed Kind = "renamed"
	// Normalised: Istio proxy spans that already carry the right name
	// (CANONICAL_NAME_AND_NAMESPACE proxies), as they come off the wire.
	Normalised Kind = "normalised"
	// Orphans: Bookinfo traffic whose productpage drops traceparent but
	// forwards x-request-id: two orphan CLIENT roots per page load, which
	// the orphan step flags and can re-link.
	Orphans Kind = "orphans"
	// NonIstio: productpage's own OpenTelemetry SDK spans, which the
	// processor must leave alone.
	NonIstio Kind = "non_istio"
)

// Mix is the share of each kind in a mixed batch (sums to 1).
var Mix = []struct {
	Kind  Kind
	Share float64
}{{Renamed, 0.4}, {Normalised, 0.3}, {Orphans, 0.2}, {NonIstio, 0.1}}

// OrphanHeavy is the mix of a mesh where half the traffic crosses an app
// that does not forward traceparent (but forwards x-request-id): half the
// spans come from Orphans Bookinfo traffic, so istio_span's orphan step
// (flagging, x-request-id pairing, relinking) runs on half the requests.
var OrphanHeavy = []struct {
	Kind  Kind
	Share float64
}{{Orphans, 0.5}, {Renamed, 0.25}, {Normalised, 0.25}}

// Config returns the simulator settings that produce a kind.
func Config(k Kind, seed uint64) meshsim.Config {
	cfg := meshsim.DefaultConfig()
	cfg.Seed = seed
	switch k {
	case Renamed:
		cfg.IstioVersion = "1.30"
		cfg.DefaultMode = meshsim.CanonicalNameOnly
		cfg.Modes["productpage"] = meshsim.OTelSemanticConventions
	case Normalised:
		cfg.DefaultMode = meshsim.CanonicalNameAndNamespace
	case Orphans:
		cfg.DefaultMode = meshsim.CanonicalNameAndNamespace
		cfg.NoTraceContext["productpage"] = true
	case NonIstio:
		cfg.AppSDKSpans = true
	}
	return cfg
}

// Flushes returns proxy exports of one kind holding at least spans spans, in
// the order the proxies would send them. NonIstio gives only the app
// SDK's exports.
func Flushes(k Kind, spans int, seed uint64) ([]meshsim.Flush, error) {
	return flushes(Config(k, seed), spans)
}

// BatchFrom is Batch for any simulator config (proxy exports only).
func BatchFrom(cfg meshsim.Config, spans int) (ptrace.Traces, error) {
	cfg.AppSDKSpans = false
	fs, err := flushes(cfg, spans)
	if err != nil {
		return ptrace.Traces{}, err
	}
	return merge(fs, spans), nil
}

func flushes(cfg meshsim.Config, spans int) ([]meshsim.Flush, error) {
	k := Renamed // any proxy kind: keep proxy exports
	if cfg.AppSDKSpans {
		k = NonIstio
	}
	sim, err := meshsim.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k, err)
	}
	var out []meshsim.Flush
	n := 0
	keep := func(fs []meshsim.Flush) {
		for _, f := range fs {
			if (k == NonIstio) != isApp(f) {
				continue
			}
			out = append(out, f)
			n += f.Traces.SpanCount()
		}
	}
	t := start
	for n < spans {
		keep(sim.Request(t))
		t = t.Add(spacing)
		if k == NonIstio && sim.Stats().AppSpans >= spans {
			keep(sim.Drain())
		}
	}
	return out, nil
}

// isApp says whether an export came from the app SDK rather than a proxy.
func isApp(f meshsim.Flush) bool { return strings.HasSuffix(f.Proxy, "/app") }

// start and spacing place the simulated page loads in time: 1000 per
// second, which keeps every proxy's flushes count-triggered.
var (
	start   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	spacing = time.Millisecond
)

// Batch returns exactly spans spans of one kind in one ptrace.Traces, one
// resource per proxy export (the last one trimmed to fit).
func Batch(k Kind, spans int, seed uint64) (ptrace.Traces, error) {
	fs, err := Flushes(k, spans, seed)
	if err != nil {
		return ptrace.Traces{}, err
	}
	return merge(fs, spans), nil
}

// merge puts the exports into one ptrace.Traces trimmed to spans spans.
func merge(fs []meshsim.Flush, spans int) ptrace.Traces {
	td := ptrace.NewTraces()
	for _, f := range fs {
		f.Traces.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	}
	trim(td, spans)
	return td
}

// Mixed returns exactly spans spans mixed by Mix, with the exports of the
// kinds interleaved at random (seeded), as a batch processor would merge
// them in arrival order.
func Mixed(spans int, seed uint64) (ptrace.Traces, error) {
	var all []meshsim.Flush
	total := 0
	for i, m := range Mix {
		want := int(float64(spans)*m.Share + 0.5)
		if i == len(Mix)-1 {
			want = spans - total
		}
		fs, err := Flushes(m.Kind, want, seed+uint64(i))
		if err != nil {
			return ptrace.Traces{}, err
		}
		td := merge(fs, want)
		total += td.SpanCount()
		for j := 0; j < td.ResourceSpans().Len(); j++ {
			one := ptrace.NewTraces()
			td.ResourceSpans().At(j).CopyTo(one.ResourceSpans().AppendEmpty())
			all = append(all, meshsim.Flush{Traces: one})
		}
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	td := ptrace.NewTraces()
	for _, f := range all {
		f.Traces.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	}
	return td, nil
}

// trim drops spans from the end until td holds n, and then any empty
// resource at the end.
func trim(td ptrace.Traces, n int) {
	extra := td.SpanCount() - n
	rss := td.ResourceSpans()
	for i := rss.Len() - 1; i >= 0 && extra > 0; i-- {
		sss := rss.At(i).ScopeSpans()
		for j := sss.Len() - 1; j >= 0 && extra > 0; j-- {
			spans := sss.At(j).Spans()
			drop := min(extra, spans.Len())
			keep := spans.Len() - drop
			k := 0
			spans.RemoveIf(func(ptrace.Span) bool { k++; return k > keep })
			extra -= drop
		}
	}
	rss.RemoveIf(func(rs ptrace.ResourceSpans) bool {
		return rs.ScopeSpans().Len() == 0 || rs.ScopeSpans().At(0).Spans().Len() == 0
	})
}
