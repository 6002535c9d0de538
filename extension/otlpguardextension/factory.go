// Package otlpguardextension checks every OTLP request the otlp receiver
// gets, before it is decoded, as a receiver middleware: nesting, span
// count, spans that could never be exported, and the bytes in flight.
package otlpguardextension // import "github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension"

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"

	"github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension/internal/metadata"
)

// NewFactory returns the factory of the otlp_guard extension.
func NewFactory() extension.Factory {
	return extension.NewFactory(metadata.Type, createDefaultConfig, create, metadata.ExtensionStability)
}

func createDefaultConfig() component.Config {
	return &Config{
		MaxValueDepth:         defaultMaxValueDepth,
		MaxSpansPerRequest:    defaultMaxSpansPerRequest,
		MaxItemsPerRequest:    defaultMaxItemsPerRequest,
		MaxExportRequestBytes: defaultMaxExportRequestBytes,
		MaxInFlightBytes:      defaultMaxInFlightBytes,
	}
}

func create(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newGuard(cfg.(*Config), set.TelemetrySettings) //nolint:contextcheck // the in-flight gauge takes context.Background: the gRPC codec that also moves it has no context
}
