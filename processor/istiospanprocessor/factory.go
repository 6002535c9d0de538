//go:generate mdatagen metadata.yaml

// Package istiospanprocessor implements the istio_span processor: it gives
// every Istio workload one service.name whatever tracingServiceName mode its
// proxies run with, adds OpenTelemetry semantic-convention attributes that
// Envoy does not send, and flags and re-links the orphaned spans that broken
// trace-context propagation leaves behind.
package istiospanprocessor // import "github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor"

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
)

const (
	// defaultFormat is Istio's own recommendation for new meshes: names that
	// are unique across namespaces and do not depend on the app label.
	defaultFormat = FormatCanonicalNameAndNamespace
	// defaultSemconvAttributes: backends group by service.namespace and
	// service.version, which Envoy never sends.
	defaultSemconvAttributes = true
	// defaultInvalidUTF8: a string a strict backend refuses would cost the
	// whole export it is batched into, other senders' spans included.
	defaultInvalidUTF8 = InvalidUTF8Reject
)

// NewFactory returns the istio_span processor factory.
func NewFactory() processor.Factory {
	f := &factory{detectors: newDetectors()}
	return processor.NewFactory(
		metadata.Type,
		createDefaultConfig,
		processor.WithTraces(f.createTraces, metadata.TracesStability),
	)
}

// factory holds what the processor instances of one collector share: the
// orphan detectors, one per config (see propagation.go).
type factory struct {
	detectors *detectors
}

func createDefaultConfig() component.Config {
	return &Config{
		ServiceName: ServiceNameConfig{
			Format:            defaultFormat,
			SemconvAttributes: defaultSemconvAttributes,
		},
		Orphans:     defaultOrphansConfig(),
		InvalidUTF8: defaultInvalidUTF8,
	}
}

func (f *factory) createTraces(
	ctx context.Context,
	set processor.Settings,
	cfg component.Config,
	next consumer.Traces,
) (processor.Traces, error) {
	p, err := newIstioSpanProcessor(set, cfg.(*Config), f.detectors)
	if err != nil {
		return nil, err
	}
	return processorhelper.NewTraces(ctx, set, cfg, next, p.processTraces,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}),
		processorhelper.WithStart(p.start),
		processorhelper.WithShutdown(p.shutdown),
	)
}
