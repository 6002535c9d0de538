// Package delivery keeps recent readings of the collector's own metrics and
// judges, per exporter, whether spans that arrived were delivered.
package delivery // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/delivery"

import (
	"sync"
	"time"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/selfmetrics"
)

// Health is one exporter's delivery over a window. Counts are deltas over the
// window; queue figures are the latest reading.
type Health struct {
	// Delivering is false when spans arrived but none were delivered.
	Delivering    bool
	Sent          float64
	Failed        float64
	FailedEnqueue float64
	// Received counts spans accepted or refused by the receivers that feed
	// this exporter (all receivers when the pipelines are unknown).
	Received      float64
	QueueSize     float64
	QueueCapacity float64
	HasQueue      bool
	// FailedByType splits Failed by error.type (metrics level detailed only).
	FailedByType map[string]float64
	// LastDelivery is when a reading last showed more spans sent; zero when no
	// retained reading did.
	LastDelivery time.Time
	// From and To are the readings the deltas are taken between.
	From, To time.Time
}

// QueueFill is QueueSize/QueueCapacity, or 0 without a queue.
func (h Health) QueueFill() float64 {
	if !h.HasQueue || h.QueueCapacity <= 0 {
		return 0
	}
	return h.QueueSize / h.QueueCapacity
}

// Tracker retains readings for a period. It is safe for concurrent use.
type Tracker struct {
	mu      sync.Mutex
	keep    time.Duration
	samples []selfmetrics.Snapshot
}

// NewTracker retains readings for keep, which should be the longest window
// evaluated plus one scrape interval.
func NewTracker(keep time.Duration) *Tracker {
	return &Tracker{keep: keep}
}

// Add records a reading. Readings must arrive in time order.
func (t *Tracker) Add(s selfmetrics.Snapshot) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.samples = append(t.samples, s)
	cut := 0
	for cut < len(t.samples)-1 && s.At.Sub(t.samples[cut].At) > t.keep {
		cut++
	}
	t.samples = append(t.samples[:0:0], t.samples[cut:]...)
}

// Len returns how many readings are retained.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.samples)
}

// Evaluate judges every exporter seen in the latest reading, or named in
// exporters, over window ending at the latest reading. receivers returns the
// receiver ids feeding an exporter; nil means all receivers.
//
// Arrivals are counted up to the reading before the latest, deliveries up to
// the latest: spans get one scrape interval to pass batching and the export
// call before their absence counts against the exporter.
func (t *Tracker) Evaluate(window time.Duration, exporters []string, receivers func(exporter string) []string) map[string]Health {
	t.mu.Lock()
	samples := t.samples
	t.mu.Unlock()
	out := map[string]Health{}
	if len(samples) == 0 {
		for _, id := range exporters {
			out[id] = Health{Delivering: true}
		}
		return out
	}
	last := len(samples) - 1
	latest := samples[last]
	base := last
	for base > 0 && latest.At.Sub(samples[base-1].At) <= window {
		base--
	}
	prev := max(last-1, base)

	ids := map[string]bool{}
	for _, id := range exporters {
		ids[id] = true
	}
	for id := range latest.Exporters {
		ids[id] = true
	}
	for id := range ids {
		cur, from := exp(latest, id), exp(samples[base], id)
		h := Health{
			Sent:          delta(cur.Sent, from.Sent),
			Failed:        delta(cur.SendFailed, from.SendFailed),
			FailedEnqueue: delta(cur.EnqueueFailed, from.EnqueueFailed),
			QueueSize:     cur.QueueSize,
			QueueCapacity: cur.QueueCapacity,
			HasQueue:      cur.HasQueue,
			From:          samples[base].At,
			To:            latest.At,
		}
		var recvIDs []string
		if receivers != nil {
			recvIDs = receivers(id)
		}
		h.Received = delta(received(samples[prev], recvIDs), received(samples[base], recvIDs))
		for typ, n := range cur.FailedByType {
			if d := delta(n, from.FailedByType[typ]); d > 0 {
				if h.FailedByType == nil {
					h.FailedByType = map[string]float64{}
				}
				h.FailedByType[typ] = d
			}
		}
		for i := last; i > 0; i-- {
			if exp(samples[i], id).Sent > exp(samples[i-1], id).Sent {
				h.LastDelivery = samples[i].At
				break
			}
		}
		h.Delivering = h.Received == 0 || h.Sent > 0
		out[id] = h
	}
	return out
}

var zero = &selfmetrics.Exporter{}

func exp(s selfmetrics.Snapshot, id string) *selfmetrics.Exporter {
	if e, ok := s.Exporters[id]; ok {
		return e
	}
	// Counters start at zero, so an exporter not yet exposed has sent nothing.
	return zero
}

func received(s selfmetrics.Snapshot, ids []string) float64 {
	var n float64
	if ids == nil {
		for _, v := range s.Received {
			n += v
		}
		return n
	}
	for _, id := range ids {
		n += s.Received[id]
	}
	return n
}

// delta tolerates a counter reset (a restarted reader) by counting from zero.
func delta(cur, prev float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}
