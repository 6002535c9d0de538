package orphans

import (
	"context"
	"errors"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/metric"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
)

// Step 2's telemetry: instruments of the processor's metadata.yaml, generated
// by mdatagen, so the processor has one telemetry regime. The names are
// repeated here for the tests that read the recorded metrics.
const (
	MetricOrphans           = "otelcol_processor_istio_span_orphans"
	MetricOutboundCalls     = "otelcol_processor_istio_span_outbound_calls"
	MetricRelinkedPairs     = "otelcol_processor_istio_span_relinked_pairs"
	MetricRequestIDsEvicted = "otelcol_processor_istio_span_request_ids_evicted"
	MetricRequestIDsTracked = "otelcol_processor_istio_span_request_ids_tracked"

	// AttrService is the metric attribute holding the normalised
	// service.name. It is not "service.name" or "service": those collide
	// with the collector's own resource and with Prometheus target labels.
	AttrService = "istio.service"
)

// newTelemetry creates the instruments. The per-service counters are
// observed from the service registry at each collection, not added to: a
// synchronous counter keeps every attribute set it was ever given, so names
// that gave up their slot (ServiceIdle) would pile up as series. The tracked
// gauge is observed only when the index exists (re-linking on).
func newTelemetry(set component.TelemetrySettings, services *serviceRegistry, tracked func() int64) (*metadata.TelemetryBuilder, error) {
	tb, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return nil, err
	}
	observed := func(value func(*serviceStats) int64) metric.Int64Callback {
		return func(_ context.Context, o metric.Int64Observer) error {
			services.observe(o, value)
			return nil
		}
	}
	errs := errors.Join(
		tb.RegisterProcessorIstioSpanOrphansCallback(observed(func(s *serviceStats) int64 { return s.orphans.Load() })),
		tb.RegisterProcessorIstioSpanOutboundCallsCallback(observed(func(s *serviceStats) int64 { return s.outbound.Load() })),
		tb.RegisterProcessorIstioSpanRelinkedPairsCallback(observed(func(s *serviceStats) int64 { return s.relinked.Load() })),
	)
	if tracked != nil {
		errs = errors.Join(errs, tb.RegisterProcessorIstioSpanRequestIdsTrackedCallback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(tracked())
			return nil
		}))
	}
	if errs != nil {
		tb.Shutdown()
		return nil, errs
	}
	return tb, nil
}
