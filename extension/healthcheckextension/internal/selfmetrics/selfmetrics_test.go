package selfmetrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func parseFile(t *testing.T, name string) Snapshot {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	require.NoError(t, err)
	defer f.Close()
	s, err := Parse(f, time.Unix(100, 0))
	require.NoError(t, err)
	return s
}

func TestParseCollectorDefaultFormat(t *testing.T) {
	s := parseFile(t, "collector_default.txt")
	assert.Equal(t, time.Unix(100, 0), s.At)
	assert.Equal(t, map[string]*Exporter{
		"otlp_grpc": {
			Sent: 120, SendFailed: 7, EnqueueFailed: 2,
			QueueSize: 12, QueueCapacity: 1000, HasQueue: true,
		},
		"otlp_http/backup": {Sent: 3},
	}, s.Exporters, "logs queue and log record counters are not traces figures")
	assert.Equal(t, map[string]float64{"otlp": 135}, s.Received, "accepted+refused over both transports")
}

func TestParseDetailedLevelWithTypeSuffixes(t *testing.T) {
	s := parseFile(t, "detailed_with_suffixes.txt")
	require.Contains(t, s.Exporters, "otlp_grpc")
	e := s.Exporters["otlp_grpc"]
	assert.InDelta(t, 50, e.SendFailed, 0)
	assert.Equal(t, map[string]float64{"Unauthenticated": 40, "Unavailable": 10}, e.FailedByType)
	assert.False(t, e.HasQueue)
	assert.Equal(t, map[string]float64{"otlp": 50}, s.Received)
}

func TestParseRejectsGarbage(t *testing.T) {
	_, err := Parse(strings.NewReader("this is { not prometheus"), time.Now())
	require.Error(t, err)
}

// TestScrapeRealOTelPrometheusExporter records the exporterhelper instruments
// through the OTel SDK and the same Prometheus exporter and translation
// strategy the collector's default reader uses, serves them over HTTP, and
// scrapes them back.
func TestScrapeRealOTelPrometheusExporter(t *testing.T) {
	for _, tc := range []struct {
		name     string
		strategy otlptranslator.TranslationStrategyOption
	}{
		// without_type_suffix and without_units (the collector default)
		{"no translation", otlptranslator.NoTranslation},
		// a reader configured without those flags
		{"with suffixes", otlptranslator.NoUTF8EscapingWithSuffixes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(),
				otelprom.WithTranslationStrategy(tc.strategy))
			require.NoError(t, err)
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
			defer func() { require.NoError(t, mp.Shutdown(context.Background())) }()
			meter := mp.Meter("go.opentelemetry.io/collector/exporter/exporterhelper")

			ctx := context.Background()
			exporter := metric.WithAttributes(attribute.String("exporter", "otlp_grpc"))
			sent, _ := meter.Int64Counter(MetricSent, metric.WithUnit("{span}"))
			failed, _ := meter.Int64Counter(MetricSendFailed, metric.WithUnit("{span}"))
			enqueueFailed, _ := meter.Int64Counter(MetricEnqueueFailed, metric.WithUnit("{span}"))
			sent.Add(ctx, 120, exporter)
			failed.Add(ctx, 4, exporter, metric.WithAttributes(attribute.String("error.type", "Unauthenticated"), attribute.Bool("error.permanent", true)))
			enqueueFailed.Add(ctx, 2, exporter)
			_, err = meter.Int64ObservableGauge(MetricQueueSize, metric.WithUnit("{batch}"),
				metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
					o.Observe(9, metric.WithAttributes(attribute.String("exporter", "otlp_grpc"), attribute.String("data_type", "traces")))
					return nil
				}))
			require.NoError(t, err)
			_, err = meter.Int64ObservableGauge(MetricQueueCapacity, metric.WithUnit("{batch}"),
				metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
					o.Observe(1000, metric.WithAttributes(attribute.String("exporter", "otlp_grpc"), attribute.String("data_type", "traces")))
					return nil
				}))
			require.NoError(t, err)
			accepted, _ := mp.Meter("go.opentelemetry.io/collector/receiver/receiverhelper").
				Int64Counter(MetricAccepted, metric.WithUnit("{span}"))
			accepted.Add(ctx, 130, metric.WithAttributes(attribute.String("receiver", "otlp"), attribute.String("transport", "grpc")))

			srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()

			s, err := Scraper{Client: client}.Scrape(ctx, srv.URL)
			require.NoError(t, err)
			assert.Equal(t, map[string]*Exporter{"otlp_grpc": {
				Sent: 120, SendFailed: 4, EnqueueFailed: 2, QueueSize: 9, QueueCapacity: 1000, HasQueue: true,
				FailedByType: map[string]float64{"Unauthenticated": 4},
			}}, s.Exporters)
			assert.Equal(t, map[string]float64{"otlp": 130}, s.Received)
		})
	}
}

func TestScrapeErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	_, err := Scraper{Client: client}.Scrape(context.Background(), srv.URL)
	require.ErrorContains(t, err, "HTTP 500")

	srv.Close()
	_, err = Scraper{Client: client}.Scrape(context.Background(), srv.URL)
	require.ErrorContains(t, err, "scraping collector metrics")
}
