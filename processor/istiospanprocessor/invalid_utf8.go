package istiospanprocessor // import "github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor"

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/utf8check"
)

// invalidUTF8Step is step 0: it applies invalid_utf8 to each batch before
// any other step changes or remembers anything of it.
type invalidUTF8Step struct {
	action    InvalidUTF8Action
	telemetry *metadata.TelemetryBuilder
	reason    []metric.AddOption // reason="invalid_utf8", built once
	logger    *zap.Logger
}

func newInvalidUTF8Step(action InvalidUTF8Action, tb *metadata.TelemetryBuilder, logger *zap.Logger) *invalidUTF8Step {
	return &invalidUTF8Step{
		action:    action,
		telemetry: tb,
		reason: []metric.AddOption{metric.WithAttributeSet(
			attribute.NewSet(attribute.String("reason", "invalid_utf8")))},
		logger: logger,
	}
}

// apply returns the error to answer the sender with (reject), or repairs the
// batch in place (replace), or does nothing (forward, or a valid batch).
func (s *invalidUTF8Step) apply(ctx context.Context, td ptrace.Traces) error {
	if s.action == InvalidUTF8Forward {
		return nil
	}
	err := utf8check.Traces(td)
	if err == nil {
		return nil
	}
	var bad *utf8check.Error
	path := ""
	if errors.As(err, &bad) {
		path = bad.Path
	}
	field := zap.String("field", path)
	if s.action == InvalidUTF8Replace {
		n := utf8check.Repair(td)
		s.telemetry.ProcessorIstioSpanStringsRepaired.Add(ctx, int64(n), s.reason...)
		// Debug only: no data is lost, and the counter shows a sender
		// that keeps doing it.
		if ce := s.logger.Check(zap.DebugLevel, "Replaced invalid UTF-8 in span strings"); ce != nil {
			ce.Write(zap.Int("strings", n), field, sender(ctx))
		}
		return nil
	}
	n := td.SpanCount()
	s.telemetry.ProcessorIstioSpanSpansRejected.Add(ctx, int64(n), s.reason...)
	s.logger.Warn("Refused spans with a string that is not valid UTF-8", zap.Int("spans", n), field, sender(ctx))
	// Permanent, so the sender does not retry a request that can never
	// succeed.
	return consumererror.NewPermanent(invalidArgument{fmt.Errorf("istio_span: %w", err)})
}

// sender is the client's address, which names the pod whose application
// wrote the string; zap.Skip when the receiver did not record it.
func sender(ctx context.Context) zap.Field {
	if addr := client.FromContext(ctx).Addr; addr != nil {
		return zap.String("client", addr.String())
	}
	return zap.Skip()
}

// invalidArgument carries the gRPC status InvalidArgument, which the OTLP
// receiver answers as it is (and as 400 over HTTP). A permanent error
// without a status is answered Internal/500: the sender would read it as
// the collector's fault.
type invalidArgument struct{ error }

func (e invalidArgument) Unwrap() error { return e.error }

// GRPCStatus is the interface grpc-go's status.FromError looks for.
func (e invalidArgument) GRPCStatus() *status.Status {
	return status.New(codes.InvalidArgument, e.Error())
}
