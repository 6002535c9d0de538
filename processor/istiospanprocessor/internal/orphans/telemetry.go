package orphans

import (
	"context"
	"errors"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/metric"
)

// Step 2's own telemetry, registered by hand on the processor's meter with
// the names and units mdatagen would generate, so that this package stands
// alone (it is not in the processor's metadata.yaml).
const (
	meterScope = "github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor"

	MetricOrphans           = "otelcol_processor_istio_span_orphans"
	MetricRelinkedPairs     = "otelcol_processor_istio_span_relinked_pairs"
	MetricRequestIDsEvicted = "otelcol_processor_istio_span_request_ids_evicted"
	MetricRequestIDsTracked = "otelcol_processor_istio_span_request_ids_tracked"

	// AttrService is the metric attribute holding the normalised
	// service.name. It is not "service.name" or "service": those collide
	// with the collector's own resource and with Prometheus target labels.
	AttrService = "istio.service"
)

type telemetry struct {
	// orphans and relinked are observed from the service registry, not
	// added to: a synchronous counter keeps every attribute set it was ever
	// given, so names that gave up their slot (ServiceIdle) would pile up as
	// series. Observed, the series are the registry's current names.
	orphans  metric.Int64ObservableCounter
	relinked metric.Int64ObservableCounter
	evicted  metric.Int64Counter
	tracked  metric.Int64ObservableGauge
	reg      metric.Registration
}

// newTelemetry creates the instruments; tracked is polled only when the
// index exists (re-linking on).
func newTelemetry(set component.TelemetrySettings, services *serviceRegistry, tracked func() int64) (*telemetry, error) {
	m := set.MeterProvider.Meter(meterScope)
	var t telemetry
	var err, errs error
	t.orphans, err = m.Int64ObservableCounter(MetricOrphans,
		metric.WithDescription("Root CLIENT spans from sidecars flagged as orphans (missing trace context), by normalised service name; at most MaxServices names, the rest (and names idle for ServiceIdle that gave up their slot) under _other."),
		metric.WithUnit("{span}"))
	errs = errors.Join(errs, err)
	t.relinked, err = m.Int64ObservableCounter(MetricRelinkedPairs,
		metric.WithDescription("Orphan/SERVER span pairs joined by a span link through guid:x-request-id, by normalised service name."),
		metric.WithUnit("{pair}"))
	errs = errors.Join(errs, err)
	t.evicted, err = m.Int64Counter(MetricRequestIDsEvicted,
		metric.WithDescription("Request ids dropped from the re-link index before their window ended, because orphans.max_tracked was reached."),
		metric.WithUnit("{request_id}"))
	errs = errors.Join(errs, err)
	t.tracked, err = m.Int64ObservableGauge(MetricRequestIDsTracked,
		metric.WithDescription("Request ids currently remembered by the re-link index."),
		metric.WithUnit("{request_id}"))
	errs = errors.Join(errs, err)
	if errs != nil {
		return nil, errs
	}
	instruments := []metric.Observable{t.orphans, t.relinked}
	if tracked != nil {
		instruments = append(instruments, t.tracked)
	}
	t.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		services.observe(o, t.orphans, t.relinked)
		if tracked != nil {
			o.ObserveInt64(t.tracked, tracked())
		}
		return nil
	}, instruments...)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func (t *telemetry) shutdown() {
	if t.reg != nil {
		_ = t.reg.Unregister()
	}
}
