// Package backendauthextension implements the backend_auth extension: it
// puts the managed backend's token into every OTLP export, over gRPC and
// HTTP, with TLS required unless plaintext is explicitly allowed, and it logs
// once, clearly, when the backend rejects the credentials.
//
// The token handling itself (header, scheme, file watching across Kubernetes
// Secret rotation) is contrib's bearertokenauth extension, run inside this
// one. backend_auth adds what bearertokenauth cannot do: run over plaintext
// gRPC when asked to (bearertokenauth's credentials always require transport
// security), refuse to start without an endpoint or a token, and report
// rejected credentials.
package backendauthextension // import "github.com/otelcol-istio/otelcol-istio/extension/backendauthextension"

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
)

const (
	typeStr = "backend_auth"
	// defaultHeader is the header of the seed's managed tracing service.
	defaultHeader = "Authentication"
	// defaultScheme is empty: the raw token is sent.
	defaultScheme = ""
)

var componentType = component.MustNewType(typeStr)

// NewFactory returns the backend_auth extension factory.
func NewFactory() extension.Factory {
	return extension.NewFactory(componentType, createDefaultConfig, create, component.StabilityLevelBeta)
}

func createDefaultConfig() component.Config {
	return &Config{Header: defaultHeader, Scheme: defaultScheme}
}

func create(ctx context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newBackendAuth(ctx, set, cfg.(*Config))
}
