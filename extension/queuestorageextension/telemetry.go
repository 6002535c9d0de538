package queuestorageextension // import "github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension"

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension/internal/journal"
	"github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension/internal/metadata"
)

// attrJournal names the journal (the component it belongs to) on every
// metric.
const attrJournal = "journal"

func journalAttrs(name string) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String(attrJournal, name)))
}

// newTelemetry builds the instruments and registers the gauges, observed
// from every open journal at each collection.
func newTelemetry(set component.TelemetrySettings, q *queueStorage) (*metadata.TelemetryBuilder, error) {
	tb, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return nil, err
	}
	each := func(value func(*client) (int64, bool)) metric.Int64Callback {
		return func(_ context.Context, o metric.Int64Observer) error {
			for _, c := range q.openClients() {
				if v, ok := value(c); ok {
					o.Observe(v, c.attrs)
				}
			}
			return nil
		}
	}
	err = errors.Join(
		tb.RegisterQueueStorageDiskBytesCallback(each(func(c *client) (int64, bool) { return c.j.Stats().FileBytes, true })),
		tb.RegisterQueueStorageSegmentsCallback(each(func(c *client) (int64, bool) { return int64(c.j.Stats().Segments), true })),
		tb.RegisterQueueStorageVolumeFreeBytesCallback(each(func(c *client) (int64, bool) {
			free, ferr := c.j.FreeBytes()
			return free, ferr == nil
		})),
	)
	if err != nil {
		tb.Shutdown()
		return nil, err
	}
	return tb, nil
}

// recordRecovery counts what Open skipped as damaged.
func recordRecovery(ctx context.Context, tb *metadata.TelemetryBuilder, rec journal.Recovery, attrs metric.MeasurementOption) {
	if rec.DamagedRecords > 0 {
		tb.QueueStorageRecordsDamaged.Add(ctx, int64(rec.DamagedRecords), attrs)
		tb.QueueStorageBytesDamaged.Add(ctx, rec.DamagedBytes, attrs)
	}
}

// syncObserver records each fdatasync's duration; ctx outlives the call
// that opened the journal (context.WithoutCancel).
func syncObserver(ctx context.Context, tb *metadata.TelemetryBuilder, attrs metric.MeasurementOption) func(time.Duration) {
	return func(d time.Duration) {
		tb.QueueStorageFsyncDuration.Record(ctx, d.Seconds(), attrs)
	}
}
