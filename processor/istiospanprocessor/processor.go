package istiospanprocessor // import "github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor"

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
)

// istioSpanProcessor runs the processor's steps, in order, on each batch:
//  1. normalise service names (names.go), so every later step and every
//     backend sees one name per workload;
//  2. (next) orphan detection, which reads the normalised service.name.
type istioSpanProcessor struct {
	telemetry *metadata.TelemetryBuilder
	names     *nameNormalizer
}

func newIstioSpanProcessor(set processor.Settings, cfg *Config) (*istioSpanProcessor, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, fmt.Errorf("istio_span: creating telemetry: %w", err)
	}
	return &istioSpanProcessor{
		telemetry: tb,
		names:     newNameNormalizer(cfg.ServiceName, tb),
	}, nil
}

func (p *istioSpanProcessor) processTraces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	p.names.normalize(ctx, td)
	// Step 2 (orphan detection) goes here: it must run after names are final.
	return td, nil
}

func (p *istioSpanProcessor) shutdown(context.Context) error {
	p.telemetry.Shutdown()
	return nil
}
