// Package metadata holds the component type and stability of the health_check
// extension. It is written by hand in the shape mdatagen generates, because the
// newest mdatagen that builds here (v0.158.0) does not match v0.162.
package metadata // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/metadata"

import "go.opentelemetry.io/collector/component"

// Type is the component type used in configuration.
var Type = component.MustNewType("health_check")

// ScopeName is the instrumentation scope of the extension's own telemetry.
const ScopeName = "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension"

// ExtensionStability is the stability level of the extension.
const ExtensionStability = component.StabilityLevelAlpha
