package istiospanprocessor

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadatatest"
	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/utf8check"
)

// secretValue stands in for a credential an application put in an attribute;
// it must not reach the log or the error, even when it is the bad string.
const secretValue = "Bearer s3cr3t-\xff-token"

// observedProc starts the processor with the given invalid_utf8, its
// telemetry and its logs (debug and up) recorded.
func observedProc(t *testing.T, action InvalidUTF8Action) (processor.Traces, *consumertest.TracesSink, *componenttest.Telemetry, *observer.ObservedLogs) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	core, logs := observer.New(zapcore.DebugLevel)
	set := metadatatest.NewSettings(tel)
	set.Logger = zap.New(core)
	cfg := createDefaultConfig().(*Config)
	cfg.InvalidUTF8 = action
	sink := new(consumertest.TracesSink)
	return startedProc(t, set, cfg, sink), sink, tel, logs
}

// With the default invalid_utf8: reject, one bad string refuses the whole
// request with a permanent error (InvalidArgument/400 at the receiver) that
// names the field; nothing goes on, the spans are counted, and the log names
// the sender but never the value.
func TestRejectsInvalidUTF8(t *testing.T) {
	p, sink, tel, logs := observedProc(t, InvalidUTF8Reject)

	td := readInput(t, "10-bookinfo-canonical-name-only-istio125.json")
	spans := td.SpanCount()
	rs := td.ResourceSpans().At(1)
	rs.ScopeSpans().At(0).Spans().At(0).Attributes().PutStr("authorization", secretValue)
	ctx := client.NewContext(context.Background(), client.Info{
		Addr: &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 41234},
	})

	err := p.ConsumeTraces(ctx, td)
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err), "a request that can never succeed is not retried")
	// What the OTLP receiver answers: the status found in the error.
	st, ok := status.FromError(err)
	require.True(t, ok)
	assert.Equal(t, codes.InvalidArgument, st.Code())
	assert.Contains(t, st.Message(), "istio_span: invalid UTF-8 in resource_spans[1]")
	var bad *utf8check.Error
	require.ErrorAs(t, err, &bad)
	assert.Equal(t, `resource_spans[1].scope_spans[0].spans[0].attributes["authorization"]`, bad.Path)
	assert.Contains(t, err.Error(), "invalid UTF-8 in resource_spans[1]")
	assert.NotContains(t, err.Error(), "s3cr3t")
	assert.Zero(t, sink.SpanCount(), "nothing of a refused request goes on")

	metadatatest.AssertEqualProcessorIstioSpanSpansRejected(t, tel, []metricdata.DataPoint[int64]{{
		Attributes: attribute.NewSet(attribute.String("reason", "invalid_utf8")), Value: int64(spans),
	}}, metricdatatest.IgnoreTimestamp())
	_, err = tel.GetMetric("otelcol_processor_istio_span_spans_renamed")
	require.Error(t, err, "a refused batch is not processed")

	refusals := logs.FilterMessage("Refused spans with a string that is not valid UTF-8").All()
	require.Len(t, refusals, 1, "one line per refused request")
	entry := refusals[0]
	assert.Equal(t, zapcore.WarnLevel, entry.Level)
	fields := entry.ContextMap()
	assert.Equal(t, "10.1.2.3:41234", fields["client"])
	assert.Equal(t, bad.Path, fields["field"])
	assert.EqualValues(t, spans, fields["spans"])
	for _, e := range logs.All() {
		assert.NotContains(t, e.Message, "s3cr3t")
		for k, v := range e.ContextMap() {
			assert.NotContains(t, k+"="+toString(v), "s3cr3t")
		}
	}

	// The next good request goes through.
	require.NoError(t, p.ConsumeTraces(ctx, readInput(t, "10-bookinfo-canonical-name-only-istio125.json")))
	assert.Equal(t, spans, sink.SpanCount())
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// invalid_utf8: forward turns the check off: the batch is processed and
// passed on with its strings as they came.
func TestForwardInvalidUTF8(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.InvalidUTF8 = InvalidUTF8Forward
	sink := new(consumertest.TracesSink)
	p := newProc(t, processortest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, p.Shutdown(context.Background())) })

	td := readInput(t, "10-bookinfo-canonical-name-only-istio125.json")
	td.ResourceSpans().At(1).ScopeSpans().At(0).Spans().At(0).SetName("GET /\xff")
	require.NoError(t, p.ConsumeTraces(context.Background(), td))
	require.Equal(t, td.SpanCount(), sink.SpanCount())
	out := sink.AllTraces()[0]
	assert.Equal(t, "GET /\xff", out.ResourceSpans().At(1).ScopeSpans().At(0).Spans().At(0).Name())
	got, _ := resourceAttr(out, 1, "service.name")
	assert.Equal(t, "productpage.default", got, "the batch was processed")
}

// A refused batch leaves nothing behind in the orphan step: its request ids
// are not remembered, so a later orphan is not linked to a parent span the
// backend never got. The control run shows the same split does link.
func TestRejectedBatchIsNotRemembered(t *testing.T) {
	for _, corrupt := range []bool{false, true} {
		name := map[bool]string{false: "valid parents", true: "refused parents"}[corrupt]
		t.Run(name, func(t *testing.T) {
			sink := new(consumertest.TracesSink)
			p := newProc(t, processortest.NewNopSettings(metadata.Type), createDefaultConfig().(*Config), sink)
			require.NoError(t, p.Start(context.Background(), newHost(&fakeHealthCheck{})))
			t.Cleanup(func() { require.NoError(t, p.Shutdown(context.Background())) })

			const fixture = "02x-bookinfo-productpage-forwards-request-id-istio125.json"
			parents := orphanFixture(t, fixture)
			keepKind(parents, ptrace.SpanKindServer) // the inbound spans that carry the request ids
			if corrupt {
				parents.ResourceSpans().At(0).Resource().Attributes().PutStr("k8s.pod.name", "productpage-\xc3\x28")
			}
			err := p.ConsumeTraces(context.Background(), parents)
			assert.Equal(t, corrupt, err != nil, "error: %v", err)

			roots := orphanFixture(t, fixture)
			keepKind(roots, ptrace.SpanKindClient) // the orphaned roots
			require.NoError(t, p.ConsumeTraces(context.Background(), roots))
			out := sink.AllTraces()[len(sink.AllTraces())-1]
			require.Len(t, flaggedSpans(out), 2)
			if corrupt {
				assert.Zero(t, linkCount(out))
			} else {
				assert.Equal(t, 2, linkCount(out))
			}
		})
	}
}

// The error message quotes keys escaped, so it is itself valid UTF-8 and
// safe to put in a gRPC status or an HTTP body.
func TestRejectionMessageIsValidUTF8(t *testing.T) {
	p := newProc(t, processortest.NewNopSettings(metadata.Type), createDefaultConfig().(*Config), new(consumertest.TracesSink))
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, p.Shutdown(context.Background())) })
	td := readInput(t, "01-bookinfo-propagated-app-label-ns-istio125.json")
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().PutStr("k\xc3\x28", "v")
	err := p.ConsumeTraces(context.Background(), td)
	require.Error(t, err)
	assert.Equal(t, err.Error(), strings.ToValidUTF8(err.Error(), "?"), "the message is valid UTF-8")
	assert.Contains(t, err.Error(), `key "k\xc3("`)
}

// invalid_utf8: replace passes every span on, with each invalid byte run
// replaced by U+FFFD, processes the batch as usual and counts the strings.
func TestReplaceInvalidUTF8(t *testing.T) {
	p, sink, tel, logs := observedProc(t, InvalidUTF8Replace)

	td := readInput(t, "10-bookinfo-canonical-name-only-istio125.json")
	s := td.ResourceSpans().At(1).ScopeSpans().At(0).Spans().At(0)
	s.SetName("GET /caf\xe9")                               // Latin-1, as a raw header byte would be
	s.Attributes().PutStr("user_agent", "curl/\xff\xfe8.0") // one run of two bad bytes
	spans := td.SpanCount()
	require.NoError(t, p.ConsumeTraces(context.Background(), td))

	require.Equal(t, spans, sink.SpanCount(), "nothing dropped")
	out := sink.AllTraces()[0]
	got := out.ResourceSpans().At(1).ScopeSpans().At(0).Spans().At(0)
	assert.Equal(t, "GET /caf\uFFFD", got.Name())
	ua, _ := got.Attributes().Get("user_agent")
	assert.Equal(t, "curl/\uFFFD8.0", ua.Str())
	require.NoError(t, utf8check.Traces(out))
	name, _ := resourceAttr(out, 1, "service.name")
	assert.Equal(t, "productpage.default", name, "the batch was processed")

	metadatatest.AssertEqualProcessorIstioSpanStringsRepaired(t, tel, []metricdata.DataPoint[int64]{{
		Attributes: attribute.NewSet(attribute.String("reason", "invalid_utf8")), Value: 2,
	}}, metricdatatest.IgnoreTimestamp())
	_, err := tel.GetMetric("otelcol_processor_istio_span_spans_rejected")
	require.Error(t, err, "nothing refused")
	repairs := logs.FilterMessage("Replaced invalid UTF-8 in span strings").All()
	require.Len(t, repairs, 1)
	assert.Equal(t, zapcore.DebugLevel, repairs[0].Level)
}
