package healthcheckextension // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension"

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
)

// Config is the configuration of the health_check extension.
//
// The first four keys (the embedded confighttp.ServerConfig, path, response_body
// and check_collector_pipeline) are contrib's v1 health_check keys with the same
// names and meaning, so an existing probe setup keeps working. Everything else
// is ours.
type Config struct {
	// ServerConfig is the HTTP server the probes talk to (endpoint, tls, ...).
	ServerConfig confighttp.ServerConfig `mapstructure:",squash"`

	// Path answers liveness/readiness probes, as in contrib. Default "/".
	Path string `mapstructure:"path"`

	// ResponseBody replaces the JSON probe body with fixed strings, as in contrib.
	ResponseBody *ResponseBodyConfig `mapstructure:"response_body"`

	// CheckCollectorPipeline is contrib's deprecated pipeline check. It is
	// parsed without validation and ignored, exactly like contrib v0.165 does;
	// `readiness` is what it was meant to be (see README).
	CheckCollectorPipeline *CheckCollectorPipelineConfig `mapstructure:"check_collector_pipeline"`

	// StatusPath serves the JSON status report. Default "/status".
	StatusPath string `mapstructure:"status_path"`

	// Delivery configures where delivery figures come from and over which window.
	Delivery DeliveryConfig `mapstructure:"delivery"`

	// Readiness optionally gates Path on delivery health. Off by default.
	Readiness ReadinessConfig `mapstructure:"readiness"`

	// legacyPort is contrib's removed `port` key when a config still has it
	// (see config_unmarshal.go); it became the endpoint, and Create warns.
	legacyPort int

	// prevent unkeyed literal initialization
	_ struct{}
}

// ResponseBodyConfig is contrib's response_body: fixed bodies for the probe path.
type ResponseBodyConfig struct {
	// Healthy is returned with 200.
	Healthy string `mapstructure:"healthy"`
	// Unhealthy is returned with 503.
	Unhealthy string `mapstructure:"unhealthy"`
}

// CheckCollectorPipelineConfig is contrib's check_collector_pipeline, kept so
// existing configurations parse.
type CheckCollectorPipelineConfig struct {
	// Enabled turned contrib's (never working) exporter failure check on.
	Enabled bool `mapstructure:"enabled"`
	// Interval is the window contrib looked at, as a duration string.
	Interval string `mapstructure:"interval"`
	// ExporterFailureThreshold is the number of failures in Interval contrib tolerated.
	ExporterFailureThreshold int `mapstructure:"exporter_failure_threshold"`
}

// DeliveryConfig says where delivery health comes from.
type DeliveryConfig struct {
	// TelemetryEndpoint is the URL of the collector's own Prometheus metrics.
	// Empty derives it from service::telemetry::metrics (default http://localhost:8888/metrics).
	TelemetryEndpoint string `mapstructure:"telemetry_endpoint"`
	// ScrapeInterval is how often TelemetryEndpoint is read.
	ScrapeInterval time.Duration `mapstructure:"scrape_interval"`
	// Window is the period /status reports counts and the latest failure over.
	Window time.Duration `mapstructure:"window"`
	// LogsEndpoint was the loopback listener for the collector's own logs.
	// It is accepted so that existing configs keep starting, and ignored with
	// a warning: error classes come from backend_auth's attempts.
	LogsEndpoint string `mapstructure:"logs_endpoint"`
}

// ReadinessConfig gates the probe path on delivery health.
type ReadinessConfig struct {
	// OnDeliveryFailure turns gating on.
	OnDeliveryFailure bool `mapstructure:"on_delivery_failure"`
	// Window is how long an exporter may fail without any successful attempt
	// before the probe answers 503.
	Window time.Duration `mapstructure:"window"`
	// QueueFill is the queue_size/queue_capacity ratio above which the probe fails.
	QueueFill float64 `mapstructure:"queue_fill"`
}

var _ component.Config = (*Config)(nil)

// Sentinel validation errors; each names the key and what is allowed.
var (
	errEndpointRequired   = errors.New("endpoint must not be empty (host:port, default localhost:13133)")
	errInvalidPath        = errors.New("path must start with / and contain no spaces, '?' or '#'")
	errInvalidStatusPath  = errors.New("status_path must start with / and contain no spaces, '?' or '#'")
	errSamePaths          = errors.New("path and status_path must differ")
	errScrapeInterval     = errors.New("delivery.scrape_interval must be at least 100ms")
	errDeliveryWindow     = errors.New("delivery.window must be at least twice delivery.scrape_interval")
	errReadinessWindow    = errors.New("readiness.window must be at least twice delivery.scrape_interval")
	errQueueFill          = errors.New("readiness.queue_fill must be in (0, 1]")
	errTelemetryEndpoint  = errors.New("delivery.telemetry_endpoint must be an http:// or https:// URL")
	errResponseBodyTooBig = errors.New("response_body.healthy and response_body.unhealthy must each be at most 4096 bytes")
)

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.ServerConfig.NetAddr.Endpoint == "" {
		errs = append(errs, errEndpointRequired)
	}
	if !validPath(c.Path) {
		errs = append(errs, fmt.Errorf("%w, got %q", errInvalidPath, c.Path))
	}
	if !validPath(c.StatusPath) {
		errs = append(errs, fmt.Errorf("%w, got %q", errInvalidStatusPath, c.StatusPath))
	}
	if c.Path == c.StatusPath {
		errs = append(errs, fmt.Errorf("%w, both are %q", errSamePaths, c.Path))
	}
	if rb := c.ResponseBody; rb != nil && (len(rb.Healthy) > maxResponseBody || len(rb.Unhealthy) > maxResponseBody) {
		errs = append(errs, errResponseBodyTooBig)
	}
	d := c.Delivery
	if d.ScrapeInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("%w, got %s", errScrapeInterval, d.ScrapeInterval))
	}
	if d.Window < 2*d.ScrapeInterval {
		errs = append(errs, fmt.Errorf("%w, got window %s and scrape_interval %s", errDeliveryWindow, d.Window, d.ScrapeInterval))
	}
	if d.TelemetryEndpoint != "" {
		u, err := url.Parse(d.TelemetryEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%w, got %q", errTelemetryEndpoint, d.TelemetryEndpoint))
		}
	}
	r := c.Readiness
	if r.Window < 2*d.ScrapeInterval {
		errs = append(errs, fmt.Errorf("%w, got window %s and scrape_interval %s", errReadinessWindow, r.Window, d.ScrapeInterval))
	}
	if r.QueueFill <= 0 || r.QueueFill > 1 {
		errs = append(errs, fmt.Errorf("%w, got %v", errQueueFill, r.QueueFill))
	}
	return errors.Join(errs...)
}

const maxResponseBody = 4096

func validPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.ContainsAny(p, " \t?#")
}
