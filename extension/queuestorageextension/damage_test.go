package queuestorageextension

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension/internal/metadata"
	"github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension/internal/metadatatest"
)

// Issue 25 contract 2, through the extension: a damaged record in the
// middle of a journal loses that record's item only; the log says which
// file, at which offset, how many records and bytes; the metric counts them.
func TestDamagedRecordIsLoggedAndCounted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ext := start(t, testConfig(dir))
	c, err := ext.GetClient(ctx, component.KindExporter, exporterID, "traces")
	require.NoError(t, err)
	for _, k := range []string{"1", "2", "3"} {
		require.NoError(t, c.Batch(ctx, storage.SetOperation("qmv0", []byte("meta after "+k)), storage.SetOperation(k, []byte("item "+k))))
	}
	require.NoError(t, c.Close(ctx))
	require.NoError(t, ext.Shutdown(ctx))

	seg := filepath.Join(dir, "exporter_otlp_grpc__traces.journal", "0000000000000001.seg")
	data, err := os.ReadFile(seg)
	require.NoError(t, err)
	recLen := len(data) / 3 // three records of the same size
	data[recLen+recLen/2] ^= 0xff
	require.NoError(t, os.WriteFile(seg, data, 0o600))

	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(ctx)) })
	core, logs := observer.New(zapcore.InfoLevel)
	set := extensiontest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = tt.NewTelemetrySettings()
	set.Logger = zap.New(core)
	e, err := NewFactory().Create(ctx, set, testConfig(dir))
	require.NoError(t, err)
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, e.Shutdown(ctx)) })
	c, err = e.(storage.Extension).GetClient(ctx, component.KindExporter, exporterID, "traces")
	require.NoError(t, err)
	defer c.Close(ctx)

	for k, want := range map[string]string{"1": "item 1", "2": "", "3": "item 3", "qmv0": "meta after 3"} {
		v, gerr := c.Get(ctx, k)
		require.NoError(t, gerr)
		assert.Equal(t, want, string(v), k)
	}
	skipped := logs.FilterMessageSnippet("Skipped damaged records").All()
	require.Len(t, skipped, 1)
	assert.Equal(t, zapcore.ErrorLevel, skipped[0].Level)
	fields := skipped[0].ContextMap()
	assert.Equal(t, "0000000000000001.seg", fields["file"])
	assert.Equal(t, int64(recLen), fields["offset"])
	assert.Equal(t, int64(recLen), fields["bytes"])
	assert.Equal(t, int64(1), fields["records"])

	attrs := attribute.NewSet(attribute.String(attrJournal, "exporter_otlp_grpc__traces"))
	metadatatest.AssertEqualQueueStorageRecordsDamaged(t, tt, []metricdata.DataPoint[int64]{{Attributes: attrs, Value: 1}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualQueueStorageBytesDamaged(t, tt, []metricdata.DataPoint[int64]{{Attributes: attrs, Value: int64(recLen)}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualQueueStorageSegments(t, tt, []metricdata.DataPoint[int64]{{Attributes: attrs, Value: 1}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualQueueStorageDiskBytes(t, tt, []metricdata.DataPoint[int64]{{Attributes: attrs, Value: int64(len(data))}}, metricdatatest.IgnoreTimestamp())
	got, err := tt.GetMetric("otelcol_queue_storage_volume_free_bytes")
	require.NoError(t, err)
	free := got.Data.(metricdata.Gauge[int64]).DataPoints
	require.Len(t, free, 1)
	assert.Positive(t, free[0].Value)
}
