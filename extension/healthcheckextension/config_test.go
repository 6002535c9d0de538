package healthcheckextension

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configtls"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/metadata"
)

func loadConfig(t *testing.T, name string) (*Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	sub, err := cm.Sub(component.NewIDWithName(metadata.Type, name).String())
	require.NoError(t, err)
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	if err := sub.Unmarshal(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func TestDefaultConfig(t *testing.T) {
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	require.NoError(t, confmap.Validate(cfg))
	assert.Equal(t, "localhost:13133", cfg.ServerConfig.NetAddr.Endpoint)
	assert.Equal(t, "tcp", string(cfg.ServerConfig.NetAddr.Transport))
	assert.Equal(t, "/", cfg.Path)
	assert.Equal(t, "/status", cfg.StatusPath)
	assert.Nil(t, cfg.ResponseBody)
	assert.Nil(t, cfg.CheckCollectorPipeline)
	assert.Equal(t, 5*time.Second, cfg.ServerConfig.ReadHeaderTimeout)
	assert.Equal(t, 10*time.Second, cfg.ServerConfig.ReadTimeout)
	assert.Equal(t, 10*time.Second, cfg.ServerConfig.WriteTimeout)
	assert.Equal(t, DeliveryConfig{ScrapeInterval: 2 * time.Second, Window: time.Minute}, cfg.Delivery)
	assert.Equal(t, ReadinessConfig{OnDeliveryFailure: false, Window: time.Minute, QueueFill: 0.9}, cfg.Readiness)
}

func TestLoadContribCompatibleConfig(t *testing.T) {
	t.Run("empty section is the default", func(t *testing.T) {
		cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
		require.NoError(t, err)
		sub, err := cm.Sub(metadata.Type.String())
		require.NoError(t, err)
		cfg := NewFactory().CreateDefaultConfig()
		require.NoError(t, sub.Unmarshal(cfg))
		assert.Equal(t, NewFactory().CreateDefaultConfig(), cfg)
	})

	t.Run("endpoint, tls and check_collector_pipeline", func(t *testing.T) {
		cfg, err := loadConfig(t, "1")
		require.NoError(t, err)
		require.NoError(t, confmap.Validate(cfg))
		assert.Equal(t, "localhost:13", cfg.ServerConfig.NetAddr.Endpoint)
		assert.Equal(t, configoptional.Some(configtls.ServerConfig{Config: configtls.Config{
			CAFile: "/path/to/ca", CertFile: "/path/to/cert", KeyFile: "/path/to/key",
		}}), cfg.ServerConfig.TLS)
		assert.Equal(t, &CheckCollectorPipelineConfig{Enabled: false, Interval: "5m", ExporterFailureThreshold: 5},
			cfg.CheckCollectorPipeline)
		assert.Equal(t, "/", cfg.Path)
	})

	t.Run("check_collector_pipeline is not validated, as in contrib", func(t *testing.T) {
		cfg, err := loadConfig(t, "invalidthreshold")
		require.NoError(t, err)
		require.NoError(t, confmap.Validate(cfg))
		assert.Equal(t, -1, cfg.CheckCollectorPipeline.ExporterFailureThreshold)
	})

	t.Run("response_body", func(t *testing.T) {
		cfg, err := loadConfig(t, "response-body")
		require.NoError(t, err)
		require.NoError(t, confmap.Validate(cfg))
		assert.Equal(t, &ResponseBodyConfig{Healthy: "I'm OK", Unhealthy: "I'm not well"}, cfg.ResponseBody)
	})

	t.Run("contrib v2 keys are unknown", func(t *testing.T) {
		_, err := loadConfig(t, "v2-http-only")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "http")
	})
}

func TestLoadOwnKeys(t *testing.T) {
	cfg, err := loadConfig(t, "pod")
	require.NoError(t, err)
	require.NoError(t, confmap.Validate(cfg))
	assert.Equal(t, "${env:MY_POD_IP}:13133", cfg.ServerConfig.NetAddr.Endpoint)
	assert.Equal(t, "/healthz", cfg.Path)
	assert.Equal(t, "/debug/status", cfg.StatusPath)
	assert.Equal(t, 2*time.Second, cfg.ServerConfig.ReadHeaderTimeout)
	assert.Equal(t, 10*time.Second, cfg.ServerConfig.WriteTimeout, "unset server keys keep our defaults")
	assert.Equal(t, DeliveryConfig{
		TelemetryEndpoint: "http://127.0.0.1:8888/metrics",
		ScrapeInterval:    2 * time.Second,
		Window:            30 * time.Second,
		LogsEndpoint:      "localhost:13134",
	}, cfg.Delivery)
	assert.Equal(t, ReadinessConfig{OnDeliveryFailure: true, Window: 20 * time.Second, QueueFill: 0.8}, cfg.Readiness)

	cfg, err = loadConfig(t, "pipeline-enabled")
	require.NoError(t, err)
	require.NoError(t, confmap.Validate(cfg))
	assert.True(t, cfg.CheckCollectorPipeline.Enabled)
	assert.False(t, cfg.Readiness.OnDeliveryFailure, "check_collector_pipeline does not switch gating on")
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name    string
		wantErr error
		wantMsg string
	}{
		{"missingendpoint", errEndpointRequired, "endpoint must not be empty"},
		{"invalidpath", errInvalidPath, `path must start with /`},
		{"same-paths", errSamePaths, `path and status_path must differ, both are "/status"`},
		{"bad-status-path", errInvalidStatusPath, `status_path must start with /`},
		{"bad-scrape-interval", errScrapeInterval, "delivery.scrape_interval must be at least 100ms, got 10ms"},
		{"short-window", errDeliveryWindow, "delivery.window must be at least twice delivery.scrape_interval"},
		{"short-readiness-window", errReadinessWindow, "readiness.window must be at least twice"},
		{"bad-queue-fill", errQueueFill, "readiness.queue_fill must be in (0, 1], got 1.5"},
		{"zero-queue-fill", errQueueFill, "readiness.queue_fill must be in (0, 1], got 0"},
		{"bad-telemetry-endpoint", errTelemetryEndpoint, `delivery.telemetry_endpoint must be an http:// or https:// URL, got "localhost:8888"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(t, tt.name)
			require.NoError(t, err)
			err = confmap.Validate(cfg)
			require.ErrorIs(t, err, tt.wantErr)
			assert.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

func TestUnknownKeyIsRejected(t *testing.T) {
	_, err := loadConfig(t, "unknown-readiness-key")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "on_delivery_failures")
}
