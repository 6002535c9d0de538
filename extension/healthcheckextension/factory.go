package healthcheckextension // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension"

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/confignet"
	"go.opentelemetry.io/collector/extension"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/metadata"
)

const (
	// defaultEndpoint is contrib's default, so probes on :13133 keep working.
	defaultEndpoint   = "localhost:13133"
	defaultPath       = "/"
	defaultStatusPath = "/status"

	// A probe endpoint answers from memory; these bound slow or idle clients
	// far below confighttp's general-purpose defaults (1m header timeout).
	defaultReadHeaderTimeout = 5 * time.Second
	defaultReadTimeout       = 10 * time.Second
	defaultWriteTimeout      = 10 * time.Second

	defaultScrapeInterval  = 2 * time.Second
	defaultDeliveryWindow  = 60 * time.Second
	defaultReadinessWindow = 60 * time.Second
	defaultQueueFill       = 0.9
)

// NewFactory creates the factory of the health_check extension.
func NewFactory() extension.Factory {
	return extension.NewFactory(
		metadata.Type,
		createDefaultConfig,
		createExtension,
		metadata.ExtensionStability,
	)
}

func createDefaultConfig() component.Config {
	server := confighttp.NewDefaultServerConfig()
	server.NetAddr = confignet.AddrConfig{
		Transport: confignet.TransportTypeTCP,
		Endpoint:  defaultEndpoint,
	}
	server.ReadHeaderTimeout = defaultReadHeaderTimeout
	server.ReadTimeout = defaultReadTimeout
	server.WriteTimeout = defaultWriteTimeout
	return &Config{
		ServerConfig: server,
		Path:         defaultPath,
		StatusPath:   defaultStatusPath,
		Delivery: DeliveryConfig{
			ScrapeInterval: defaultScrapeInterval,
			Window:         defaultDeliveryWindow,
		},
		Readiness: ReadinessConfig{
			OnDeliveryFailure: false,
			Window:            defaultReadinessWindow,
			QueueFill:         defaultQueueFill,
		},
	}
}

func createExtension(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	cfg.(*Config).warnLegacyPort(set.Logger)
	return newHealthCheck(cfg.(*Config), set), nil
}
