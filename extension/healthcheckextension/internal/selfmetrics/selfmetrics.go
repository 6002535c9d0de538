// Package selfmetrics reads the collector's own Prometheus metrics (the
// exporterhelper and receiverhelper counters) into a Snapshot.
//
// An extension cannot read the collector's MeterProvider, and exporters send no
// status events while they fail, so the Prometheus endpoint that
// service::telemetry::metrics exposes is the one place these figures can be
// read from inside the process.
package selfmetrics // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/selfmetrics"

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric names as exporterhelper and receiverhelper v0.162.0 register them
// (see their internal/metadata/generated_telemetry.go). A Prometheus reader
// without without_type_suffix appends _total to counters; Parse strips it.
const (
	MetricSent          = "otelcol_exporter_sent_spans"
	MetricSendFailed    = "otelcol_exporter_send_failed_spans"
	MetricEnqueueFailed = "otelcol_exporter_enqueue_failed_spans"
	MetricQueueSize     = "otelcol_exporter_queue_size"
	MetricQueueCapacity = "otelcol_exporter_queue_capacity"
	MetricAccepted      = "otelcol_receiver_accepted_spans"
	MetricRefused       = "otelcol_receiver_refused_spans"
)

// Exporter figures are cumulative counters and current gauges for one exporter.
type Exporter struct {
	Sent          float64
	SendFailed    float64
	EnqueueFailed float64
	QueueSize     float64
	QueueCapacity float64
	// HasQueue is true when the exporter publishes queue gauges (sending_queue on).
	HasQueue bool
	// FailedByType splits SendFailed by the error.type attribute, which the
	// collector only keeps at service::telemetry::metrics::level: detailed.
	FailedByType map[string]float64
}

// Snapshot is one reading of the collector's own metrics.
type Snapshot struct {
	At time.Time
	// Exporters is keyed by exporter id (the `exporter` attribute), traces only.
	Exporters map[string]*Exporter
	// Received is keyed by receiver id: accepted plus refused spans, cumulative.
	Received map[string]float64
}

// Parse reads Prometheus text exposition format.
func Parse(r io.Reader, at time.Time) (Snapshot, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return Snapshot{}, fmt.Errorf("parsing Prometheus text: %w", err)
	}
	s := Snapshot{At: at, Exporters: map[string]*Exporter{}, Received: map[string]float64{}}
	for name, fam := range families {
		name = strings.TrimSuffix(name, "_total")
		for _, m := range fam.GetMetric() {
			s.add(name, m)
		}
	}
	return s, nil
}

func (s *Snapshot) add(name string, m *dto.Metric) {
	labels := map[string]string{}
	for _, lp := range m.GetLabel() {
		labels[lp.GetName()] = lp.GetValue()
	}
	v := value(m)
	switch name {
	case MetricAccepted, MetricRefused:
		if id := labels["receiver"]; id != "" {
			s.Received[id] += v
		}
		return
	}
	id := labels["exporter"]
	if id == "" {
		return
	}
	// Queue gauges exist per signal; a traces exporter is what we judge.
	if dt, ok := labels["data_type"]; ok && dt != "traces" {
		return
	}
	switch name {
	case MetricSent:
		s.exporter(id).Sent += v
	case MetricSendFailed:
		e := s.exporter(id)
		e.SendFailed += v
		if t := firstNonEmpty(labels["error_type"], labels["error.type"]); t != "" {
			if e.FailedByType == nil {
				e.FailedByType = map[string]float64{}
			}
			e.FailedByType[t] += v
		}
	case MetricEnqueueFailed:
		s.exporter(id).EnqueueFailed += v
	case MetricQueueSize:
		e := s.exporter(id)
		e.QueueSize += v
		e.HasQueue = true
	case MetricQueueCapacity:
		e := s.exporter(id)
		e.QueueCapacity += v
		e.HasQueue = true
	}
}

func (s *Snapshot) exporter(id string) *Exporter {
	e, ok := s.Exporters[id]
	if !ok {
		e = &Exporter{}
		s.Exporters[id] = e
	}
	return e
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// maxBody bounds what a scrape reads; the collector's own metrics are a few KiB.
const maxBody = 8 << 20

// Scraper fetches and parses a Prometheus endpoint.
type Scraper struct {
	Client *http.Client
}

// Scrape reads url once. ctx bounds the request.
func (s Scraper) Scrape(ctx context.Context, url string) (Snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return Snapshot{}, fmt.Errorf("building scrape request: %w", err)
	}
	// Ask for the classic text format so names and labels use underscores.
	req.Header.Set("Accept", "text/plain;version=0.0.4;escaping=underscores")
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return Snapshot{}, fmt.Errorf("scraping collector metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
		return Snapshot{}, fmt.Errorf("scraping collector metrics: HTTP %d", resp.StatusCode)
	}
	return Parse(io.LimitReader(resp.Body, maxBody), time.Now())
}
