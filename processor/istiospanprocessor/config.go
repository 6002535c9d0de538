package istiospanprocessor // import "github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor"

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/orphans"
)

// Format is the service.name format the processor writes
// (service_name.format). The names match Istio's
// ProxyConfig.tracingServiceName values, plus "preserve".
type Format string

const (
	// FormatAppLabelAndNamespace keeps an incoming "<x>.N" and otherwise
	// writes "C.N"; the app label itself is not on the wire.
	FormatAppLabelAndNamespace Format = "APP_LABEL_AND_NAMESPACE"
	// FormatCanonicalNameOnly writes "C".
	FormatCanonicalNameOnly Format = "CANONICAL_NAME_ONLY"
	// FormatCanonicalNameAndNamespace writes "C.N".
	FormatCanonicalNameAndNamespace Format = "CANONICAL_NAME_AND_NAMESPACE"
	// FormatPreserve renames nothing.
	FormatPreserve Format = "preserve"
)

// formats lists the accepted values in the order the docs give them.
var formats = []Format{
	FormatAppLabelAndNamespace,
	FormatCanonicalNameOnly,
	FormatCanonicalNameAndNamespace,
	FormatPreserve,
}

// Config is the istio_span processor's configuration.
type Config struct {
	// ServiceName controls service-name normalisation (step 1).
	ServiceName ServiceNameConfig `mapstructure:"service_name"`
	// Orphans controls orphan flagging, re-linking by x-request-id and the
	// propagation report (step 2). confmap.Validate checks it through its
	// own Validate, so its errors carry the "orphans." key.
	Orphans OrphansConfig `mapstructure:"orphans"`
	// InvalidUTF8 is what to do with a batch holding a string that is not
	// valid UTF-8 (step 0, before anything is changed or remembered).
	InvalidUTF8 InvalidUTF8Action `mapstructure:"invalid_utf8"`

	// Prevent unkeyed literals so fields can be added without breaking callers.
	_ struct{}
}

// ServiceNameConfig is the `service_name` block.
type ServiceNameConfig struct {
	// Format is the service.name to write for Istio proxy spans.
	Format Format `mapstructure:"format"`
	// SemconvAttributes adds service.namespace, k8s.namespace.name and
	// service.version to Istio proxy resources that lack them.
	SemconvAttributes bool `mapstructure:"semconv_attributes"`

	_ struct{}
}

// InvalidUTF8Action is the invalid_utf8 setting.
type InvalidUTF8Action string

const (
	// InvalidUTF8Reject refuses the sender's whole request with a permanent
	// error, which the OTLP receiver answers with InvalidArgument (gRPC) or
	// 400 (HTTP), naming the field.
	InvalidUTF8Reject InvalidUTF8Action = "reject"
	// InvalidUTF8Replace repairs each invalid byte sequence to U+FFFD and
	// passes every span on.
	InvalidUTF8Replace InvalidUTF8Action = "replace"
	// InvalidUTF8Forward does not check: strings go on as they came.
	InvalidUTF8Forward InvalidUTF8Action = "forward"
)

// errInvalidUTF8Action is wrapped by InvalidUTF8Action.Validate.
var errInvalidUTF8Action = errors.New("invalid invalid_utf8")

// Validate checks the invalid_utf8 value.
func (a InvalidUTF8Action) Validate() error {
	switch a {
	case InvalidUTF8Reject, InvalidUTF8Replace, InvalidUTF8Forward:
		return nil
	}
	return fmt.Errorf("%w: invalid_utf8 %q must be one of %s, %s, %s",
		errInvalidUTF8Action, string(a), InvalidUTF8Reject, InvalidUTF8Replace, InvalidUTF8Forward)
}

var _ component.Config = (*Config)(nil)

// errInvalidFormat is wrapped by Validate so callers can match it.
var errInvalidFormat = errors.New("invalid service_name.format")

// Validate checks the service_name block.
func (cfg *ServiceNameConfig) Validate() error {
	if slices.Contains(formats, cfg.Format) {
		return nil
	}
	allowed := make([]string, len(formats))
	for i, f := range formats {
		allowed[i] = string(f)
	}
	hint := ""
	if strings.EqualFold(string(cfg.Format), "OTEL_SEMANTIC_CONVENTIONS") {
		// Istio's serviceAttributeEnrichment mode is an incoming shape the
		// processor understands, not a naming rule it can reproduce: the
		// Deployment name is not on the wire.
		hint = " (OTEL_SEMANTIC_CONVENTIONS is an Istio input mode the processor reads, not a target format)"
	}
	return fmt.Errorf("%w: service_name.format %q must be one of %s%s",
		errInvalidFormat, cfg.Format, strings.Join(allowed, ", "), hint)
}

// OrphansConfig is the `orphans` block (step 2): orphan flagging, re-linking
// by x-request-id and the propagation report.
type OrphansConfig struct {
	// Enabled turns the whole step on or off.
	Enabled bool `mapstructure:"enabled"`
	// Origins are workloads that really start requests (cron jobs, load
	// generators), as "name" or "name.namespace"; their CLIENT roots are
	// never flagged.
	Origins []string `mapstructure:"origins"`
	// LinkByRequestID re-links orphans to their probable parent through
	// guid:x-request-id.
	LinkByRequestID bool `mapstructure:"link_by_request_id"`
	// Window is how long a request id is remembered after it is first seen.
	Window time.Duration `mapstructure:"window"`
	// MaxTracked bounds the number of remembered request ids; the oldest is
	// evicted first.
	MaxTracked int `mapstructure:"max_tracked"`

	_ struct{}
}

// Validate checks the orphans block; errors name the keys as written
// ("orphans.window must be > 0").
func (cfg *OrphansConfig) Validate() error {
	return cfg.detectorConfig().Validate()
}

// detectorConfig is the block as the orphans package takes it.
func (cfg *OrphansConfig) detectorConfig() orphans.Config {
	return orphans.Config{
		Enabled:         cfg.Enabled,
		Origins:         cfg.Origins,
		LinkByRequestID: cfg.LinkByRequestID,
		Window:          cfg.Window,
		MaxTracked:      cfg.MaxTracked,
	}
}

// defaultOrphansConfig is the orphans package's defaults as a config block.
func defaultOrphansConfig() OrphansConfig {
	d := orphans.DefaultConfig()
	return OrphansConfig{
		Enabled:         d.Enabled,
		Origins:         d.Origins,
		LinkByRequestID: d.LinkByRequestID,
		Window:          d.Window,
		MaxTracked:      d.MaxTracked,
	}
}
