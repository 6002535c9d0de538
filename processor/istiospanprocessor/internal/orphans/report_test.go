package orphans

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func TestReportOnNoPropagationFixture(t *testing.T) {
	d, clk := newTestDetector(t, DefaultConfig())
	d.Process(readTraces(t, fxNoPropagate))
	at := clk.now()
	clk.advance(time.Minute)
	got := d.Report()
	require.Equal(t, []ServiceReport{
		// Culprits first. The gateway is not a sidecar: it is never in the report.
		{Service: "productpage.default", Outbound: 2, Orphans: 2, OrphanRatio: 1, LastSeen: at, Diagnosis: DiagnosisNoHeaders},
		{Service: "reviews.default", Outbound: 1, Orphans: 0, OrphanRatio: 0, LastSeen: at, Diagnosis: DiagnosisNone},
	}, got)
}

func TestReportOnForwardingFixture(t *testing.T) {
	d, _ := newTestDetector(t, DefaultConfig())
	d.Process(readTraces(t, fxForwardsXRID))
	pp := reportFor(t, d, "productpage.default")
	assert.Equal(t, int64(2), pp.Relinked)
	assert.Equal(t, DiagnosisRequestIDOnly, pp.Diagnosis)
	assert.Equal(t, "forwards x-request-id but not traceparent (B3-only or no W3C propagation?)", pp.Diagnosis)
}

func TestReportRatioAccumulates(t *testing.T) {
	d, clk := newTestDetector(t, DefaultConfig())
	d.Process(readTraces(t, fxPropagated)) // productpage: 2 outbound, 0 orphans
	clk.advance(time.Second)
	d.Process(readTraces(t, fxNoPropagate)) // productpage: 2 outbound, 2 orphans
	pp := reportFor(t, d, "productpage.default")
	assert.Equal(t, int64(4), pp.Outbound)
	assert.Equal(t, int64(2), pp.Orphans)
	assert.InDelta(t, 0.5, pp.OrphanRatio, 1e-9)
	assert.Equal(t, clk.now(), pp.LastSeen)
}

func TestReportJSONShape(t *testing.T) {
	d, _ := newTestDetector(t, DefaultConfig())
	d.Process(readTraces(t, fxForwardsXRID))
	b, err := json.Marshal(d.Report())
	require.NoError(t, err)
	var lines []map[string]any
	require.NoError(t, json.Unmarshal(b, &lines))
	require.NotEmpty(t, lines)
	keys := make([]string, 0, len(lines[0]))
	for k := range lines[0] {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, []string{"service", "outbound", "orphans", "orphan_ratio", "relinked", "last_seen", "diagnosis"}, keys)
	assert.Equal(t, "productpage.default", lines[0]["service"])
	assert.EqualValues(t, 2, lines[0]["relinked"])
	assert.Equal(t, "2026-11-22T03:00:00Z", lines[0]["last_seen"])
}

func TestReportCardinalityIsCapped(t *testing.T) {
	d, _ := newTestDetector(t, DefaultConfig())
	const extra = 7
	td := ptrace.NewTraces()
	for i := range MaxServices + extra {
		p := addProxy(td, fmt.Sprintf("svc-%04d.default", i))
		p.add(spanOpts{trace: fmt.Sprintf("c%031x", i), span: fmt.Sprintf("c%015x", i), kind: ptrace.SpanKindClient,
			nodeID:          fmt.Sprintf("sidecar~10.0.0.1~svc-%04d-abc.default~default.svc.cluster.local", i),
			upstreamCluster: "outbound|80||x.default.svc.cluster.local"})
	}
	d.Process(td)
	rep := d.Report()
	require.Len(t, rep, MaxServices+1)
	other := reportFor(t, d, OtherService)
	assert.Equal(t, int64(extra), other.Orphans)
	assert.Equal(t, int64(extra), other.Outbound)
	// Later traffic of a known service still lands under its own name.
	td2 := ptrace.NewTraces()
	addProxy(td2, "svc-0000.default").add(spanOpts{trace: "dddddddddddddddddddddddddddddddd", span: "dddddddddddddddd",
		kind: ptrace.SpanKindClient, nodeID: "sidecar~10.0.0.1~svc-0000-abc.default~default.svc.cluster.local",
		upstreamCluster: "outbound|80||x.default.svc.cluster.local"})
	d.Process(td2)
	assert.Equal(t, int64(2), reportFor(t, d, "svc-0000.default").Orphans)
	assert.Len(t, d.Report(), MaxServices+1)
}

func TestReportWithoutServiceName(t *testing.T) {
	d, _ := newTestDetector(t, DefaultConfig())
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	p := proxy{spans: rs.ScopeSpans().AppendEmpty().Spans(), res: rs.Resource().Attributes()}
	productpageRoot(p, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "eeeeeeeeeeeeeeee", "r", 0)
	d.Process(td)
	assert.Equal(t, int64(1), reportFor(t, d, "unknown_service").Orphans)
}
