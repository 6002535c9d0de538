package otlpguardextension // import "github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension"

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/extensionmiddleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"

	"github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension/internal/metadata"
	"github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension/internal/tracecheck"
)

// Reasons a request is refused that are not about its content.
const (
	reasonRequestTooLarge = "request_too_large" // over the receiver's own size limit
	reasonInFlight        = "in_flight_limit"   // the in-flight budget is spent
)

// itemCost is what the in-flight budget charges per item (span, event,
// link, attribute, array or map element) on top of the request's bytes:
// the decoded request and what the pipeline makes of it, measured at about
// 146 bytes per empty attribute (README "Limits").
const itemCost = 160

// cost is what a request is charged in the in-flight budget beyond its bytes.
func cost(c tracecheck.Counts) int64 { return int64(c.Items) * itemCost }

// logInterval is how often a refusal of one reason and transport is
// logged; the ones in between are counted in the next line ("suppressed").
const logInterval = 10 * time.Second

// guard is the otlp_guard extension: an HTTP and a gRPC server middleware
// for the otlp receiver.
type guard struct {
	limits    tracecheck.Limits
	budget    *budget
	logger    *zap.Logger
	telemetry *metadata.TelemetryBuilder

	logMu   sync.Mutex
	lastLog map[string]time.Time
	skipped map[string]int
	nowFunc func() time.Time
}

var (
	_ extensionmiddleware.HTTPServer = (*guard)(nil)
	_ extensionmiddleware.GRPCServer = (*guard)(nil)
)

func newGuard(cfg *Config, set component.TelemetrySettings) (*guard, error) {
	tb, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return nil, fmt.Errorf("otlp_guard telemetry: %w", err)
	}
	g := &guard{
		limits: tracecheck.Limits{
			MaxValueDepth: cfg.MaxValueDepth,
			MaxSpans:      cfg.MaxSpansPerRequest,
			MaxItems:      cfg.MaxItemsPerRequest,
			MaxSpanBytes:  cfg.MaxExportRequestBytes,
		},
		logger:    set.Logger,
		telemetry: tb,
		lastLog:   map[string]time.Time{},
		skipped:   map[string]int{},
		nowFunc:   time.Now,
	}
	g.budget = &budget{limit: cfg.MaxInFlightBytes, onChange: func(delta int64) {
		tb.OtlpGuardInFlightBytes.Add(context.Background(), delta)
	}}
	return g, nil
}

func (*guard) Start(context.Context, component.Host) error { return nil }

func (g *guard) Shutdown(context.Context) error {
	g.telemetry.Shutdown()
	return nil
}

// refusal is one refused request, as counted and logged.
type refusal struct {
	transport, reason, client string
	code                      codes.Code
	// What the log says: the field path, the request's size or count and
	// the limit. Never content.
	fields []zap.Field
	msg    string
}

// refused counts r and logs it, at most once per logInterval for each
// reason and transport.
func (g *guard) refused(ctx context.Context, r refusal) {
	g.telemetry.OtlpGuardRequestsRefused.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(
		attribute.String("reason", r.reason), attribute.String("transport", r.transport))))
	key := r.transport + "/" + r.reason
	g.logMu.Lock()
	now := g.nowFunc()
	if last, ok := g.lastLog[key]; ok && now.Sub(last) < logInterval {
		g.skipped[key]++
		g.logMu.Unlock()
		return
	}
	g.lastLog[key] = now
	skipped := g.skipped[key]
	g.skipped[key] = 0
	g.logMu.Unlock()
	fields := append([]zap.Field{
		zap.String("transport", r.transport),
		zap.String("reason", r.reason),
		zap.String("client", r.client),
		zap.String("code", r.code.String()),
		zap.String("error", r.msg),
	}, r.fields...)
	if skipped > 0 {
		fields = append(fields, zap.Int("suppressed", skipped))
	}
	g.logger.Warn("Refused an OTLP request before decoding it", fields...)
}

// checkError maps a tracecheck error to what the sender is told.
func checkError(e *tracecheck.Error) (codes.Code, []zap.Field) {
	var fields []zap.Field
	if e.Limit > 0 {
		fields = append(fields, zap.Int("limit", e.Limit))
	}
	if e.Path != "" {
		fields = append(fields, zap.String("field", e.Path))
	}
	switch e.Reason {
	case tracecheck.TooManySpans, tracecheck.TooManyItems:
		// Too large: ResourceExhausted without RetryInfo, which OTLP
		// clients do not retry (as for the receiver's own size limit).
		return codes.ResourceExhausted, append(fields, zap.Int("spans_over", e.Got))
	case tracecheck.SpanTooLarge:
		return codes.ResourceExhausted, append(fields, zap.Int("span_request_bytes", e.Got))
	default: // ValueTooDeep, Malformed: the request is bad as it is.
		return codes.InvalidArgument, fields
	}
}

// budget is the admission control: bytes of requests admitted and not yet
// answered, over all connections and both transports.
type budget struct {
	limit    int64 // 0: unlimited
	used     atomic.Int64
	onChange func(delta int64)
}

// smallRequest is the cost up to which a request may use the reserve:
// Envoy's flushes and SDK batches cost far less, so a flood of large
// requests that spends the budget does not refuse them.
const smallRequest = 1 << 20

// acquire admits n more bytes, unless that would go over the limit. Small
// requests have a reserve of an eighth of the limit on top that large ones
// cannot use. A request alone is always admitted, so that one larger than
// the budget is not refused forever.
func (b *budget) acquire(n int64) bool {
	limit := b.limit
	if n <= smallRequest {
		limit += b.limit / 8
	}
	for {
		u := b.used.Load()
		if b.limit > 0 && u > 0 && u+n > limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			b.onChange(n)
			return true
		}
	}
}

func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.used.Add(-n)
	b.onChange(-n)
}
