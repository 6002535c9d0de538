package delivery

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/selfmetrics"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// reading builds a snapshot at t0+sec with cumulative figures for otlp_grpc.
func reading(sec int, received, sent, failed float64) selfmetrics.Snapshot {
	return selfmetrics.Snapshot{
		At:        t0.Add(time.Duration(sec) * time.Second),
		Exporters: map[string]*selfmetrics.Exporter{"otlp_grpc": {Sent: sent, SendFailed: failed, QueueSize: 10, QueueCapacity: 100, HasQueue: true}},
		Received:  map[string]float64{"otlp": received},
	}
}

func TestNoReadingsMeansDelivering(t *testing.T) {
	h := NewTracker(time.Minute).Evaluate(10*time.Second, []string{"otlp_grpc"}, nil)
	assert.Equal(t, map[string]Health{"otlp_grpc": {Delivering: true}}, h)
}

func TestHealthyFlow(t *testing.T) {
	tr := NewTracker(time.Minute)
	for i := 0; i <= 4; i++ {
		tr.Add(reading(i*5, float64(100*i), float64(100*i), 0))
	}
	h := tr.Evaluate(10*time.Second, nil, nil)["otlp_grpc"]
	assert.True(t, h.Delivering)
	assert.InDelta(t, 200, h.Sent, 0, "sent over the 10s window: readings at 10s..20s")
	assert.InDelta(t, 100, h.Received, 0, "arrivals up to the reading before the latest")
	assert.Equal(t, t0.Add(20*time.Second), h.LastDelivery)
	assert.Equal(t, t0.Add(10*time.Second), h.From)
	assert.Equal(t, t0.Add(20*time.Second), h.To)
	assert.InDelta(t, 0.1, h.QueueFill(), 1e-9)
}

func TestTurnsFalseWithinWindowAndRecoversOnNextDelivery(t *testing.T) {
	tr := NewTracker(time.Minute)
	window := 10 * time.Second
	eval := func() Health { return tr.Evaluate(window, nil, nil)["otlp_grpc"] }

	// Delivering until 10s; the backend goes down right after.
	tr.Add(reading(0, 0, 0, 0))
	tr.Add(reading(5, 50, 50, 0))
	tr.Add(reading(10, 100, 100, 0))
	require.True(t, eval().Delivering)
	tr.Add(reading(15, 150, 100, 0))
	assert.True(t, eval().Delivering, "a delivery is still inside the window")
	tr.Add(reading(20, 200, 100, 0))
	h := eval()
	assert.False(t, h.Delivering, "spans arrived and none were delivered for a whole window")
	assert.InDelta(t, 0, h.Sent, 0)
	assert.InDelta(t, 50, h.Received, 0)
	assert.Equal(t, t0.Add(10*time.Second), h.LastDelivery)

	tr.Add(reading(25, 250, 100, 30))
	h = eval()
	assert.False(t, h.Delivering)
	assert.InDelta(t, 30, h.Failed, 0)

	tr.Add(reading(30, 300, 101, 30))
	assert.True(t, eval().Delivering, "back to true after the next delivery")
}

func TestIdleIsDelivering(t *testing.T) {
	tr := NewTracker(time.Minute)
	for i := 0; i <= 6; i++ {
		tr.Add(reading(i*5, 10, 10, 0))
	}
	h := tr.Evaluate(10*time.Second, nil, nil)["otlp_grpc"]
	assert.True(t, h.Delivering, "nothing arrived, nothing to deliver")
	assert.InDelta(t, 0, h.Sent, 0)
}

func TestBurstGetsOneScrapeIntervalOfGrace(t *testing.T) {
	tr := NewTracker(time.Minute)
	tr.Add(reading(0, 0, 0, 0))
	tr.Add(reading(5, 0, 0, 0))
	tr.Add(reading(10, 40, 0, 0)) // spans arrived, still in the batch processor
	assert.True(t, tr.Evaluate(10*time.Second, nil, nil)["otlp_grpc"].Delivering)
	tr.Add(reading(15, 40, 0, 0))
	assert.False(t, tr.Evaluate(10*time.Second, nil, nil)["otlp_grpc"].Delivering)
}

func TestReceiversPerExporter(t *testing.T) {
	tr := NewTracker(time.Minute)
	for i := 0; i <= 3; i++ {
		s := reading(i*5, 0, 0, 0)
		s.Received["zipkin"] = float64(100 * i) // feeds another pipeline
		tr.Add(s)
	}
	only := func(string) []string { return []string{"otlp"} }
	assert.True(t, tr.Evaluate(10*time.Second, nil, only)["otlp_grpc"].Delivering,
		"spans of a pipeline this exporter is not in do not count")
	assert.False(t, tr.Evaluate(10*time.Second, nil, nil)["otlp_grpc"].Delivering,
		"with unknown pipelines every receiver counts")
}

func TestExporterNotYetExposedCountsFromZero(t *testing.T) {
	tr := NewTracker(time.Minute)
	tr.Add(selfmetrics.Snapshot{At: t0, Received: map[string]float64{}})
	tr.Add(reading(5, 10, 10, 0))
	tr.Add(reading(10, 20, 20, 0))
	h := tr.Evaluate(time.Minute, []string{"otlp_grpc", "otlp_http"}, nil)
	assert.InDelta(t, 20, h["otlp_grpc"].Sent, 0)
	assert.True(t, h["otlp_grpc"].Delivering)
	assert.False(t, h["otlp_http"].Delivering, "a configured exporter that never sent while spans arrived")
}

func TestCounterResetAndRetention(t *testing.T) {
	tr := NewTracker(20 * time.Second)
	tr.Add(reading(0, 100, 100, 0))
	tr.Add(reading(5, 110, 110, 0))
	tr.Add(reading(10, 5, 5, 0)) // reader restarted
	h := tr.Evaluate(time.Minute, nil, nil)["otlp_grpc"]
	assert.InDelta(t, 5, h.Sent, 0)
	for i := 3; i < 20; i++ {
		tr.Add(reading(i*5, 5, 5, 0))
	}
	assert.Equal(t, 5, tr.Len(), "readings older than keep are dropped")
}

func TestFailedByTypeDeltas(t *testing.T) {
	tr := NewTracker(time.Minute)
	a, b := reading(0, 0, 0, 10), reading(5, 10, 0, 30)
	a.Exporters["otlp_grpc"].FailedByType = map[string]float64{"Unauthenticated": 10}
	b.Exporters["otlp_grpc"].FailedByType = map[string]float64{"Unauthenticated": 25, "Unavailable": 5}
	tr.Add(a)
	tr.Add(b)
	h := tr.Evaluate(time.Minute, nil, nil)["otlp_grpc"]
	assert.Equal(t, map[string]float64{"Unauthenticated": 15, "Unavailable": 5}, h.FailedByType)
}
