package istiospanprocessor

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadatatest"
	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/orphans"
)

// fakeHealthCheck stands in for the health_check extension: it has the
// duck-typed RegisterStatusSource method and records what is registered.
type fakeHealthCheck struct {
	component.StartFunc
	component.ShutdownFunc

	mu            sync.Mutex
	sources       map[string]func() any
	registrations int
}

func (f *fakeHealthCheck) RegisterStatusSource(name string, source func() any) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sources == nil {
		f.sources = map[string]func() any{}
	}
	f.sources[name] = source
	f.registrations++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.sources, name)
	}
}

// status renders a registered source as /status would: json.Marshal(source()).
func (f *fakeHealthCheck) status(t *testing.T, name string) (json.RawMessage, bool) {
	t.Helper()
	f.mu.Lock()
	src, ok := f.sources[name]
	f.mu.Unlock()
	if !ok {
		return nil, false
	}
	b, err := json.Marshal(src())
	require.NoError(t, err)
	return b, true
}

// extHost is a component.Host with the given extensions.
type extHost map[component.ID]component.Component

func (h extHost) GetExtensions() map[component.ID]component.Component { return h }

func newHost(hc *fakeHealthCheck) component.Host {
	return extHost{
		component.MustNewID("health_check"): hc,
		component.MustNewID("file_storage"): struct {
			component.StartFunc
			component.ShutdownFunc
		}{},
	}
}

type reportLine struct {
	Service     string  `json:"service"`
	Outbound    int64   `json:"outbound"`
	Orphans     int64   `json:"orphans"`
	OrphanRatio float64 `json:"orphan_ratio"`
	Relinked    int64   `json:"relinked"`
	LastSeen    string  `json:"last_seen"`
	Diagnosis   string  `json:"diagnosis"`
}

func propagation(t *testing.T, hc *fakeHealthCheck) []reportLine {
	t.Helper()
	raw, ok := hc.status(t, "propagation")
	require.True(t, ok, "propagation is registered")
	var lines []reportLine
	require.NoError(t, json.Unmarshal(raw, &lines))
	return lines
}

func newProc(t testing.TB, set processor.Settings, cfg *Config, next consumer.Traces) processor.Traces {
	t.Helper()
	p, err := NewFactory().CreateTraces(t.Context(), set, cfg, next)
	require.NoError(t, err)
	return p
}

// startedProc is newProc started on a host without extensions, shut down
// (and checked) when the test ends.
func startedProc(t testing.TB, set processor.Settings, cfg *Config, next consumer.Traces) processor.Traces {
	t.Helper()
	p := newProc(t, set, cfg, next)
	require.NoError(t, p.Start(t.Context(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, p.Shutdown(context.Background())) })
	return p
}

func orphanFixture(t *testing.T, name string) ptrace.Traces {
	t.Helper()
	td, err := golden.ReadTraces(filepath.Join("internal", "orphans", "testdata", name))
	require.NoError(t, err)
	return td
}

func flaggedSpans(td ptrace.Traces) []string {
	var out []string
	forEachSpanIn(td, func(s ptrace.Span) {
		if v, ok := s.Attributes().Get(orphans.AttrOrphan); ok && v.Type() == pcommon.ValueTypeBool && v.Bool() {
			out = append(out, s.SpanID().String())
		}
	})
	return out
}

func linkCount(td ptrace.Traces) int {
	n := 0
	forEachSpanIn(td, func(s ptrace.Span) { n += s.Links().Len() })
	return n
}

func forEachSpanIn(td ptrace.Traces, fn func(ptrace.Span)) {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		forEachSpan(td.ResourceSpans().At(i), fn)
	}
}

// The detector runs after normalisation: with CANONICAL_NAME_ONLY the report
// and the metric name productpage, not the incoming productpage.default.
func TestOrphansRunAfterNormalisation(t *testing.T) {
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	cfg := createDefaultConfig().(*Config)
	cfg.ServiceName.Format = FormatCanonicalNameOnly
	sink := new(consumertest.TracesSink)
	hc := &fakeHealthCheck{}
	p := newProc(t, metadatatest.NewSettings(tel), cfg, sink)
	require.NoError(t, p.Start(context.Background(), newHost(hc)))

	require.NoError(t, p.ConsumeTraces(context.Background(), readInput(t, "02-bookinfo-productpage-no-propagation-istio125.json")))
	out := sink.AllTraces()[0]
	assert.ElementsMatch(t, []string{"288ce221e446097c", "69bada79a64698c3"}, flaggedSpans(out))

	lines := propagation(t, hc)
	require.Len(t, lines, 2)
	assert.Equal(t, "productpage", lines[0].Service)
	assert.Equal(t, int64(2), lines[0].Outbound)
	assert.Equal(t, int64(2), lines[0].Orphans)
	assert.InDelta(t, 1.0, lines[0].OrphanRatio, 1e-9)
	assert.Equal(t, "forwards no trace headers", lines[0].Diagnosis)
	assert.NotEmpty(t, lines[0].LastSeen)
	assert.Equal(t, "reviews", lines[1].Service)

	got, err := tel.GetMetric(orphans.MetricOrphans)
	require.NoError(t, err)
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name: orphans.MetricOrphans, Description: got.Description, Unit: "{span}",
		Data: metricdata.Sum[int64]{
			Temporality: metricdata.CumulativeTemporality, IsMonotonic: true,
			DataPoints: []metricdata.DataPoint[int64]{{
				Attributes: attribute.NewSet(attribute.String(orphans.AttrService, "productpage")), Value: 2,
			}},
		},
	}, got, metricdatatest.IgnoreTimestamp())

	require.NoError(t, p.Shutdown(context.Background()))
	_, ok := hc.status(t, "propagation")
	assert.False(t, ok, "Shutdown unregisters the report")
}

func TestRelinkThroughProcessor(t *testing.T) {
	sink := new(consumertest.TracesSink)
	hc := &fakeHealthCheck{}
	p := newProc(t, processortest.NewNopSettings(metadata.Type), createDefaultConfig().(*Config), sink)
	require.NoError(t, p.Start(context.Background(), newHost(hc)))
	t.Cleanup(func() { require.NoError(t, p.Shutdown(context.Background())) })

	require.NoError(t, p.ConsumeTraces(context.Background(), orphanFixture(t, "02x-bookinfo-productpage-forwards-request-id-istio125.json")))
	out := sink.AllTraces()[0]
	assert.Len(t, flaggedSpans(out), 2)
	assert.Equal(t, 2, linkCount(out))
	lines := propagation(t, hc)
	assert.Equal(t, "productpage.default", lines[0].Service)
	assert.Equal(t, int64(2), lines[0].Relinked)
	assert.Equal(t, "forwards x-request-id but not traceparent (B3-only or no W3C propagation?)", lines[0].Diagnosis)
}

// One config used by two pipelines gives two processor instances; they share
// one detector, so a pair split across the pipelines is still linked, and
// /status has one report that lives until the last instance shuts down.
func TestDetectorSharedAcrossPipelines(t *testing.T) {
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*Config)
	set := processortest.NewNopSettings(metadata.Type)
	sinkA, sinkB := new(consumertest.TracesSink), new(consumertest.TracesSink)
	pA, err := f.CreateTraces(context.Background(), set, cfg, sinkA)
	require.NoError(t, err)
	pB, err := f.CreateTraces(context.Background(), set, cfg, sinkB)
	require.NoError(t, err)
	hc := &fakeHealthCheck{}
	host := newHost(hc)
	require.NoError(t, pA.Start(context.Background(), host))
	require.NoError(t, pB.Start(context.Background(), host))
	assert.Equal(t, 1, hc.registrations, "one report, registered once")

	td := orphanFixture(t, "02x-bookinfo-productpage-forwards-request-id-istio125.json")
	servers, clients := ptrace.NewTraces(), ptrace.NewTraces()
	td.CopyTo(servers)
	td.CopyTo(clients)
	keepKind(servers, ptrace.SpanKindServer)
	keepKind(clients, ptrace.SpanKindClient)
	require.NoError(t, pA.ConsumeTraces(context.Background(), servers))
	require.NoError(t, pB.ConsumeTraces(context.Background(), clients))
	assert.Equal(t, 2, linkCount(sinkB.AllTraces()[0]), "the orphans in pipeline B link to the SERVER span seen by pipeline A")

	require.NoError(t, pA.Shutdown(context.Background()))
	lines := propagation(t, hc) // still there: pB runs
	assert.Equal(t, int64(2), lines[0].Relinked)
	require.NoError(t, pB.Shutdown(context.Background()))
	_, ok := hc.status(t, "propagation")
	assert.False(t, ok)

	// A new instance after all were shut down starts from a clean state.
	sinkC := new(consumertest.TracesSink)
	pC, err := f.CreateTraces(context.Background(), set, cfg, sinkC)
	require.NoError(t, err)
	require.NoError(t, pC.Start(context.Background(), host))
	assert.Empty(t, propagation(t, hc))
	require.NoError(t, pC.Shutdown(context.Background()))
}

func keepKind(td ptrace.Traces, kind ptrace.SpanKind) {
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			ss.Spans().RemoveIf(func(s ptrace.Span) bool { return s.Kind() != kind })
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
}

func TestOrphansDisabled(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Orphans.Enabled = false
	sink := new(consumertest.TracesSink)
	hc := &fakeHealthCheck{}
	p := newProc(t, processortest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, p.Start(context.Background(), newHost(hc)))
	require.NoError(t, p.ConsumeTraces(context.Background(), orphanFixture(t, "02x-bookinfo-productpage-forwards-request-id-istio125.json")))
	require.NoError(t, p.Shutdown(context.Background()))
	out := sink.AllTraces()[0]
	assert.Empty(t, flaggedSpans(out))
	assert.Zero(t, linkCount(out))
	assert.Zero(t, hc.registrations, "nothing to report")
}

func TestOrphansWithoutHealthCheck(t *testing.T) {
	sink := new(consumertest.TracesSink)
	p := newProc(t, processortest.NewNopSettings(metadata.Type), createDefaultConfig().(*Config), sink)
	require.NoError(t, p.Start(t.Context(), componenttest.NewNopHost()))
	require.NoError(t, p.ConsumeTraces(context.Background(), readInput(t, "02-bookinfo-productpage-no-propagation-istio125.json")))
	require.NoError(t, p.Shutdown(context.Background()))
	assert.Len(t, flaggedSpans(sink.AllTraces()[0]), 2)
}

func TestInvalidOrphansConfigFailsCreate(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Orphans.MaxTracked = 0
	_, err := NewFactory().CreateTraces(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, new(consumertest.TracesSink))
	require.ErrorContains(t, err, "orphans.max_tracked must be > 0")
}
