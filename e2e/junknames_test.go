package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// Issue 13 item 6: the per-service cap cannot be captured. 100,000 junk
// service names flood the shipped collector; the report and the metrics stay
// capped at 500 names plus _other; a real service that keeps sending is
// listed under its own name at most ServiceIdle (1 minute) after the flood's
// last junk name; and a steady legitimate stream beside the flood loses
// nothing.
func TestJunkServiceNamesCannotCaptureTheCap(t *testing.T) {
	const (
		junk        = 100_000
		perRequest  = 1000
		maxServices = 500
		serviceIdle = time.Minute
		realService = "reviews.default"
	)
	backend := harness.StartBackend(t)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", t.TempDir()))
	load := startLoad(t, col.GRPCEndpoint, 500, 50)

	send := func(td ptrace.Traces) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := harness.SendGRPC(ctx, col.GRPCEndpoint, td); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	var seq uint32
	orphanFrom := func(td ptrace.Traces, canonical, ns string) { appendOrphan(td, &seq, canonical, ns) }
	sendReal := func() {
		td := ptrace.NewTraces()
		orphanFrom(td, "reviews", "default")
		send(td)
	}

	start := time.Now()
	for i := 0; i < junk; i += perRequest {
		td := ptrace.NewTraces()
		for k := i; k < i+perRequest; k++ {
			orphanFrom(td, fmt.Sprintf("junk-%06d", k), "flood")
		}
		send(td)
	}
	floodEnd := time.Now()
	t.Logf("%d junk names sent in %s", junk, floodEnd.Sub(start).Round(time.Millisecond))

	sendReal()
	lines := propagation(t, col)
	if len(lines) > maxServices+1 {
		t.Errorf("report has %d lines, cap is %d + _other", len(lines), maxServices)
	}
	if _, ok := lines[realService]; ok {
		t.Errorf("%s listed right after the flood: every slot was seen within ServiceIdle", realService)
	}
	if _, ok := lines["_other"]; !ok {
		t.Error("no _other line after the flood")
	}

	// The real service keeps sending; it is listed once the junk has been
	// idle for ServiceIdle.
	deadline := floodEnd.Add(serviceIdle + 30*time.Second)
	var listedAfter time.Duration
	for time.Now().Before(deadline) {
		time.Sleep(5 * time.Second)
		sendReal()
		if lines = propagation(t, col); lines[realService] > 0 {
			listedAfter = time.Since(floodEnd)
			break
		}
	}
	if listedAfter == 0 {
		t.Fatalf("%s not listed %s after the flood", realService, time.Since(floodEnd).Round(time.Second))
	}
	t.Logf("%s listed under its own name %s after the flood's last junk name", realService, listedAfter.Round(time.Second))
	if len(lines) > maxServices+1 {
		t.Errorf("report has %d lines, cap is %d + _other", len(lines), maxServices)
	}
	body := get(t, "http://"+col.MetricsEndpoint+"/metrics")
	series := regexp.MustCompile(`(?m)^otelcol_processor_istio_span_orphans(_total)?\{[^}]*istio_service="([^"]*)"`).FindAllStringSubmatch(body, -1)
	names := map[string]bool{}
	for _, s := range series {
		names[s[2]] = true
	}
	if len(names) > maxServices+1 || !names[realService] {
		t.Errorf("orphans metric has %d istio_service values (cap %d + _other), %s among them: %t", len(names), maxServices, realService, names[realService])
	}

	load.Stop()
	tl := load.waitDelivered(backend, 60*time.Second)
	t.Logf("canary beside the flood: %s", tl)
	if tl.Accepted == 0 || tl.Lost != 0 || tl.Refused != 0 {
		t.Errorf("canary: %d accepted, %d lost, %d refused (codes %v)", tl.Accepted, tl.Lost, tl.Refused, load.errorCodes())
	}
}

// propagation reads /status's propagation report: orphans by service.
func propagation(t *testing.T, col *harness.Collector) map[string]int64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + col.HealthEndpoint + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var status struct {
		Propagation []struct {
			Service string `json:"service"`
			Orphans int64  `json:"orphans"`
		} `json:"propagation"`
	}
	if err := json.Unmarshal(b, &status); err != nil {
		t.Fatalf("/status: %v", err)
	}
	out := map[string]int64{}
	for _, l := range status.Propagation {
		out[l.Service] = l.Orphans
	}
	return out
}

// appendOrphan appends one orphaned CLIENT root from canonical.ns's sidecar
// to td, with a span and trace id made from *seq (incremented).
func appendOrphan(td ptrace.Traces, seq *uint32, canonical, ns string) {
	*seq++
	n := *seq
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", canonical+"."+ns)
	s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	var tid [16]byte
	binary.BigEndian.PutUint32(tid[12:], n)
	tid[0] = 0xee
	s.SetTraceID(tid)
	s.SetSpanID(pcommon.SpanID{0xee, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	s.SetKind(ptrace.SpanKindClient)
	s.SetName("x." + ns + ".svc.cluster.local:80/*")
	now := time.Now()
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
	s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	a := s.Attributes()
	a.PutStr("node_id", fmt.Sprintf("sidecar~10.0.0.1~%s-abc.%s~%s.svc.cluster.local", canonical, ns, ns))
	a.PutStr("upstream_cluster", "outbound|80||x."+ns+".svc.cluster.local")
	a.PutStr("istio.canonical_service", canonical)
	a.PutStr("istio.namespace", ns)
	a.PutStr("component", "proxy")
}

// Issue 29 item 1: one sender re-sending a request that names 500 made-up
// services keeps every slot against the idle rule alone. Slots are charged
// to the sender's address: a real service from another address (127.0.0.2
// against the flood's 127.0.0.1) is listed under its own name at its first
// span, in /status and in the orphans metric, and stays listed while the
// flood goes on.
func TestOneSenderCannotHoldTheCap(t *testing.T) {
	const (
		maxServices = 500
		flooder     = "127.0.0.1"
		realSender  = "127.0.0.2"
	)
	realServices := []string{"reviews", "ratings"}
	backend := harness.StartBackend(t)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", t.TempDir()))
	var seq uint32
	send := func(from string, td ptrace.Traces) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := harness.SendGRPCFrom(ctx, col.GRPCEndpoint, from, td); err != nil {
			t.Fatalf("send from %s: %v", from, err)
		}
	}
	flood := func() {
		td := ptrace.NewTraces()
		for i := range maxServices {
			appendOrphan(td, &seq, fmt.Sprintf("made-up-%03d", i), "flood")
		}
		send(flooder, td)
	}
	sendReal := func() {
		for _, name := range realServices {
			td := ptrace.NewTraces()
			appendOrphan(td, &seq, name, "default")
			send(realSender, td)
		}
	}
	for range 3 {
		flood()
	}
	if lines := propagation(t, col); len(lines) != maxServices {
		t.Fatalf("after the flood the report has %d lines, want the %d made-up names", len(lines), maxServices)
	}
	sendReal()
	lines := propagation(t, col)
	for _, name := range realServices {
		if lines[name+".default"] != 1 {
			t.Errorf("%s.default: %d orphans under its own name at its first span, want 1", name, lines[name+".default"])
		}
	}
	for range 3 {
		flood()
		sendReal()
	}
	lines = propagation(t, col)
	if len(lines) > maxServices+1 {
		t.Errorf("report has %d lines, cap is %d + _other", len(lines), maxServices)
	}
	for _, name := range realServices {
		if lines[name+".default"] != 4 {
			t.Errorf("%s.default: %d orphans under its own name while the flood goes on, want 4", name, lines[name+".default"])
		}
	}
	body := get(t, "http://"+col.MetricsEndpoint+"/metrics")
	for _, name := range realServices {
		if !regexp.MustCompile(`(?m)^otelcol_processor_istio_span_orphans(_total)?\{[^}]*istio_service="` + name + `\.default"[^}]*\} 4$`).MatchString(body) {
			t.Errorf("no orphans series of 4 for %s.default", name)
		}
	}
}
