package healthcheckextension

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
)

func TestMetricsURLFromCollectorConfig(t *testing.T) {
	prom := func(p map[string]any) map[string]any {
		return map[string]any{"pull": map[string]any{"exporter": map[string]any{"prometheus": p}}}
	}
	tests := []struct {
		name    string
		metrics any
		want    string
		wantErr string
	}{
		{name: "no telemetry section", metrics: nil, want: "http://localhost:8888/metrics"},
		{name: "level only", metrics: map[string]any{"level": "detailed"}, want: "http://localhost:8888/metrics"},
		{name: "level none", metrics: map[string]any{"level": "none"}, wantErr: "level is none"},
		{name: "pod ip reader", metrics: map[string]any{"readers": []any{prom(map[string]any{"host": "10.1.2.3", "port": 9999})}}, want: "http://10.1.2.3:9999/metrics"},
		{name: "all interfaces", metrics: map[string]any{"readers": []any{prom(map[string]any{"host": "0.0.0.0", "port": "8888"})}}, want: "http://localhost:8888/metrics"},
		{name: "ipv6 any", metrics: map[string]any{"readers": []any{prom(map[string]any{"host": "::", "port": 8888})}}, want: "http://[::1]:8888/metrics"},
		{name: "otel exporter default port", metrics: map[string]any{"readers": []any{prom(map[string]any{})}}, want: "http://localhost:9464/metrics"},
		{name: "periodic only", metrics: map[string]any{"readers": []any{map[string]any{"periodic": map[string]any{}}}}, wantErr: "no pull Prometheus reader"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			service := map[string]any{}
			if tt.metrics != nil {
				service["telemetry"] = map[string]any{"metrics": tt.metrics}
			}
			v := parseCollectorConfig(confmap.NewFromStringMap(map[string]any{"service": service}))
			if tt.wantErr != "" {
				require.ErrorContains(t, v.metricsErr, tt.wantErr)
				return
			}
			require.NoError(t, v.metricsErr)
			assert.Equal(t, tt.want, v.metricsURL)
		})
	}
	assert.Equal(t, defaultMetricsURL, parseCollectorConfig(nil).metricsURL)
}

func TestTracesTopology(t *testing.T) {
	conf := confmap.NewFromStringMap(map[string]any{
		"connectors": map[string]any{"forward": nil, "spanmetrics": nil},
		"service": map[string]any{"pipelines": map[string]any{
			"traces/in":     map[string]any{"receivers": []any{"otlp", "zipkin"}, "exporters": []any{"forward", "spanmetrics"}},
			"traces/out":    map[string]any{"receivers": []any{"forward"}, "exporters": []any{"otlp_grpc"}},
			"traces/debug":  map[string]any{"receivers": []any{"otlp"}, "exporters": []any{"debug"}},
			"metrics":       map[string]any{"receivers": []any{"spanmetrics", "prometheus"}, "exporters": []any{"otlp_grpc/metrics"}},
			"traces/cyclic": map[string]any{"receivers": []any{"forward"}, "exporters": []any{"forward"}},
		}},
	})
	v := parseCollectorConfig(conf)
	assert.Equal(t, []string{"debug", "otlp_grpc"}, v.exporters, "only traces exporters, connectors excluded")
	assert.Equal(t, []string{"otlp", "zipkin"}, v.receiversOf("otlp_grpc"), "followed through the forward connector")
	assert.Equal(t, []string{"otlp"}, v.receiversOf("debug"))
	assert.Nil(t, v.receiversOf("unknown"), "unknown exporters count all receivers")

	assert.Nil(t, parseCollectorConfig(confmap.New()).receiversOf("otlp_grpc"))
}

// The rule that maps attempts to exporters: the extensions an exporter names
// under auth::authenticator and middlewares; one shared by two exporters is
// reported.
func TestExporterObservers(t *testing.T) {
	conf := confmap.NewFromStringMap(map[string]any{
		"exporters": map[string]any{
			"otlp_grpc": map[string]any{"auth": map[string]any{"authenticator": "backend_auth/grpc"},
				"middlewares": []any{map[string]any{"id": "backend_auth/grpc"}, map[string]any{"id": "other"}}},
			"otlp_http":      map[string]any{"auth": map[string]any{"authenticator": "backend_auth/grpc"}},
			"otlp_http/solo": map[string]any{"auth": map[string]any{"authenticator": "backend_auth/solo"}},
			"debug":          nil,
		},
		"service": map[string]any{"pipelines": map[string]any{
			"traces": map[string]any{"receivers": []any{"otlp"}, "exporters": []any{"otlp_grpc", "otlp_http", "otlp_http/solo", "debug"}},
		}},
	})
	v := parseCollectorConfig(conf)
	assert.Equal(t, []string{"backend_auth/grpc", "other"}, v.observers["otlp_grpc"])
	assert.Equal(t, []string{"backend_auth/solo"}, v.observers["otlp_http/solo"])
	assert.Nil(t, v.observers["debug"])
	assert.Equal(t, map[string][]string{"backend_auth/grpc": {"otlp_grpc", "otlp_http"}}, v.sharedObservers())
}
