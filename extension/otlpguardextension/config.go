package otlpguardextension // import "github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension"

import "errors"

// Defaults. README "Limits" says why each is what it is.
const (
	// 32 AnyValue levels: protobuf-java's default recursion limit of 100
	// messages fits 32 map levels under a span event's attribute (6
	// messages above the first value, 3 per map level); protobuf-go's
	// 10,000 and encoding/json's 10,000 fit far more.
	defaultMaxValueDepth = 32
	// 16,384 spans: twice the batch processor's default batch (8,192) and
	// 32 times the SDKs' default export batch (512).
	defaultMaxSpansPerRequest = 16384
	// 262,144 items: a 4 MiB request of real spans has about 100,000
	// (attributes of 40 bytes); 2,000,000 empty attributes fit in 4 MiB
	// and decode to about 290 MiB. At 160 bytes each, 262,144 items are
	// about 40 MiB decoded.
	defaultMaxItemsPerRequest = 262144
	// 4 MiB, the default of OTLP_BACKEND_MAX_REQUEST_BYTES.
	defaultMaxExportRequestBytes = 4 << 20
	// 128 MiB of requests in flight, counted as their bytes plus 160 bytes
	// per item: about what they decode to. Three requests at the item
	// limit, six 4 MiB requests of real spans, thousands of Envoy flushes.
	defaultMaxInFlightBytes = 128 << 20
)

// Config is the otlp_guard extension's configuration. Every limit is
// checked on the raw request, before it is decoded; 0 turns a check off.
type Config struct {
	// MaxValueDepth is the deepest attribute value nesting accepted (1 is
	// a plain value, 2 a value inside an array or map, ...).
	MaxValueDepth int `mapstructure:"max_value_depth"`
	// MaxSpansPerRequest is the most spans one request may hold.
	MaxSpansPerRequest int `mapstructure:"max_spans_per_request"`
	// MaxItemsPerRequest is the most items (spans, events, links,
	// attributes, array and map elements) one request may hold.
	MaxItemsPerRequest int `mapstructure:"max_items_per_request"`
	// MaxExportRequestBytes is the export limit (OTLP_BACKEND_MAX_REQUEST_BYTES):
	// a span that needs more on its own, with its resource and scope, is
	// refused when it arrives.
	MaxExportRequestBytes int `mapstructure:"max_export_request_bytes"`
	// MaxInFlightBytes is the budget of requests admitted and not yet
	// answered, over all connections, each counted as its bytes plus 160
	// bytes per item; requests beyond it are refused with a retryable
	// status.
	MaxInFlightBytes int64 `mapstructure:"max_in_flight_bytes"`

	_ struct{}
}

var errNegative = errors.New("max_value_depth, max_spans_per_request, max_items_per_request, max_export_request_bytes and max_in_flight_bytes must be 0 (off) or positive")

// Validate checks the limits.
func (c *Config) Validate() error {
	if c.MaxValueDepth < 0 || c.MaxSpansPerRequest < 0 || c.MaxItemsPerRequest < 0 || c.MaxExportRequestBytes < 0 || c.MaxInFlightBytes < 0 {
		return errNegative
	}
	return nil
}
