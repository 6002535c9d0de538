//go:generate mdatagen metadata.yaml

// Package groupcommitprocessor implements the group_commit processor: placed
// last in a pipeline whose exporter writes to a persistent, fsync'd queue, it
// merges requests that arrive while a write is in flight into the next single
// write, so the queue does one fsync per group of requests instead of one per
// request. Every caller is answered with the result of the write that carried
// its spans, only after that write returned.
package groupcommitprocessor // import "github.com/otelcol-istio/otelcol-istio/processor/groupcommitprocessor"

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"github.com/otelcol-istio/otelcol-istio/processor/groupcommitprocessor/internal/metadata"
)

const (
	// defaultMaxSpans matches the shipped exporter batch's max_size: a group
	// never needs splitting again on its way out.
	defaultMaxSpans = 4096
	// defaultMaxBytes matches the shipped receivers' 4 MiB request limit: a
	// merged write is never larger than the largest request we accept.
	defaultMaxBytes = 4 << 20
	// defaultMaxItems is otlp_guard's default max_items_per_request: a queue
	// item never decodes into more structs than the largest request the
	// guard admits. Envoy's spans carry ~25 items each, so on real traffic
	// max_spans binds first; attribute-dense requests (2 bytes per empty
	// attribute) are the ones it splits.
	defaultMaxItems = 262144
	// defaultMaxWait caps the under-load wait for company (it is at most one
	// write's duration anyway): a few fsyncs on slow disks.
	defaultMaxWait = 10 * time.Millisecond
)

// NewFactory returns the group_commit processor factory.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		metadata.Type,
		createDefaultConfig,
		processor.WithTraces(createTraces, metadata.TracesStability),
	)
}

func createDefaultConfig() component.Config {
	return &Config{MaxSpans: defaultMaxSpans, MaxBytes: defaultMaxBytes, MaxItems: defaultMaxItems, MaxWait: defaultMaxWait}
}

func createTraces(
	ctx context.Context,
	set processor.Settings,
	cfg component.Config,
	next consumer.Traces,
) (processor.Traces, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	c := newCommitter(cfg.(*Config), next, tb)
	// processorhelper in front of the committer gives the standard per-request
	// incoming/outgoing item metrics; the committer is its next consumer.
	return processorhelper.NewTraces(ctx, set, cfg, c, passThrough,
		// The committer moves the resources of waiting requests into the
		// group's first request.
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}),
		processorhelper.WithShutdown(func(context.Context) error {
			tb.Shutdown()
			return nil
		}),
	)
}

func passThrough(_ context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	return td, nil
}
