package istiospanprocessor // import "github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor"

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/orphans"
)

// istioSpanProcessor runs the processor's steps, in order, on each batch:
//  0. refuse (or repair) a batch holding a string that is not valid UTF-8
//     (invalid_utf8.go), before anything is changed or remembered;
//  1. normalise service names (names.go), so every later step and every
//     backend sees one name per workload;
//  2. flag orphaned roots and re-link them by x-request-id
//     (internal/orphans), which reports per normalised service.name.
type istioSpanProcessor struct {
	telemetry *metadata.TelemetryBuilder
	utf8      *invalidUTF8Step
	names     *nameNormalizer
	orphans   *sharedDetector // nil when orphans.enabled is false
	started   bool
}

func newIstioSpanProcessor(set processor.Settings, cfg *Config, ds *detectors) (*istioSpanProcessor, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, fmt.Errorf("istio_span: creating telemetry: %w", err)
	}
	sd, err := ds.acquire(set, cfg)
	if err != nil {
		tb.Shutdown()
		return nil, fmt.Errorf("istio_span: %w", err)
	}
	return &istioSpanProcessor{
		telemetry: tb,
		utf8:      newInvalidUTF8Step(cfg.InvalidUTF8, tb, set.Logger),
		names:     newNameNormalizer(cfg.ServiceName, tb),
		orphans:   sd,
	}, nil
}

func (p *istioSpanProcessor) processTraces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	if err := p.utf8.apply(ctx, td); err != nil {
		return td, err
	}
	var b *orphans.Batch
	if p.orphans != nil {
		b = p.orphans.det.Begin(ctx)
	}
	if b == nil {
		p.names.normalize(ctx, td)
		return td, nil
	}
	// Step 2 takes each resource right after step 1 made it final: it
	// reports by the normalised name, and the spans are still in cache
	// (a batch of 1000 fresh spans does not fit in L2).
	p.names.normalizeEach(ctx, td, b.Resource)
	b.End(ctx)
	return td, nil
}

func (p *istioSpanProcessor) start(_ context.Context, host component.Host) error {
	if p.orphans != nil {
		p.orphans.start(host)
		p.started = true
	}
	return nil
}

func (p *istioSpanProcessor) shutdown(context.Context) error {
	if p.orphans != nil {
		p.orphans.release(p.started)
		p.orphans, p.started = nil, false
	}
	p.telemetry.Shutdown()
	return nil
}
