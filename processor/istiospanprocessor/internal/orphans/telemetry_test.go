package orphans

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
)

func newTelemetryDetector(t *testing.T, cfg Config) (*Detector, *componenttest.Telemetry) {
	t.Helper()
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	d, _ := newTestDetectorWith(t, cfg, tt.NewTelemetrySettings())
	return d, tt
}

// assertSum checks a monotonic cumulative counter: name, unit and points.
func assertSum(t *testing.T, tt *componenttest.Telemetry, name, unit string, want ...metricdata.DataPoint[int64]) {
	t.Helper()
	got, err := tt.GetMetric(name)
	require.NoError(t, err)
	assert.Equal(t, unit, got.Unit)
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name:        name,
		Description: got.Description,
		Unit:        unit,
		Data: metricdata.Sum[int64]{
			Temporality: metricdata.CumulativeTemporality,
			IsMonotonic: true,
			DataPoints:  want,
		},
	}, got, metricdatatest.IgnoreTimestamp())
}

func svcPoint(svc string, v int64) metricdata.DataPoint[int64] {
	return metricdata.DataPoint[int64]{Attributes: attribute.NewSet(attribute.String(AttrService, svc)), Value: v}
}

func TestTelemetryOrphansAndRelinked(t *testing.T) {
	d, tt := newTelemetryDetector(t, DefaultConfig())
	d.Process(readTraces(t, fxForwardsXRID))
	d.Process(readTraces(t, fxNoPropagate))
	assertSum(t, tt, MetricOrphans, "{span}", svcPoint("productpage.default", 4))
	assertSum(t, tt, MetricRelinkedPairs, "{pair}", svcPoint("productpage.default", 2))
	// The orphan ratio's denominator: every outbound call, by service, the
	// same count the propagation report shows.
	var points []metricdata.DataPoint[int64]
	for _, line := range d.Report() {
		points = append(points, svcPoint(line.Service, line.Outbound))
	}
	require.NotEmpty(t, points)
	assertSum(t, tt, MetricOutboundCalls, "{span}", points...)
}

func TestTelemetryOverflowBucket(t *testing.T) {
	d, tt := newTelemetryDetector(t, DefaultConfig())
	for i := range MaxServices { // fill the registry to the cap
		d.services.add(noSender, string(rune('A'+i%26))+string(rune('a'+i/26)), d.now().UnixNano(), 0, 0, 0)
	}
	d.Process(readTraces(t, fxForwardsXRID))
	assertSum(t, tt, MetricOrphans, "{span}", svcPoint(OtherService, 2))
	assertSum(t, tt, MetricRelinkedPairs, "{pair}", svcPoint(OtherService, 2))
}

func TestTelemetryEvictionsAndTracked(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxTracked = 3
	d, tt := newTelemetryDetector(t, cfg)
	for i := range 5 {
		d.Process(serverBatch(i))
	}
	assertSum(t, tt, MetricRequestIDsEvicted, "{request_id}", metricdata.DataPoint[int64]{Value: 2})

	got, err := tt.GetMetric(MetricRequestIDsTracked)
	require.NoError(t, err)
	metricdatatest.AssertEqual(t, metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{{Value: 3}}},
		got.Data.(metricdata.Gauge[int64]), metricdatatest.IgnoreTimestamp())
}

func TestTelemetryWithoutIndex(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LinkByRequestID = false
	d, tt := newTelemetryDetector(t, cfg)
	d.Process(readTraces(t, fxNoPropagate))
	_, err := tt.GetMetric(MetricRequestIDsTracked)
	require.Error(t, err, "no index, nothing observed")
	assertSum(t, tt, MetricOrphans, "{span}", svcPoint("productpage.default", 2))
}
