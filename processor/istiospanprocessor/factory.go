//go:generate mdatagen metadata.yaml

// Package istiospanprocessor implements the istio_span processor: it gives
// every Istio workload one service.name whatever tracingServiceName mode its
// proxies run with, and adds OpenTelemetry semantic-convention attributes
// that Envoy does not send.
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
)

// NewFactory returns the istio_span processor factory.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		metadata.Type,
		createDefaultConfig,
		processor.WithTraces(createTraces, metadata.TracesStability),
	)
}

func createDefaultConfig() component.Config {
	return &Config{
		ServiceName: ServiceNameConfig{
			Format:            defaultFormat,
			SemconvAttributes: defaultSemconvAttributes,
		},
	}
}

func createTraces(
	ctx context.Context,
	set processor.Settings,
	cfg component.Config,
	next consumer.Traces,
) (processor.Traces, error) {
	p, err := newIstioSpanProcessor(set, cfg.(*Config))
	if err != nil {
		return nil, err
	}
	return processorhelper.NewTraces(ctx, set, cfg, next, p.processTraces,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}),
		processorhelper.WithShutdown(p.shutdown),
	)
}
