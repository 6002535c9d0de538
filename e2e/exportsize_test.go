package e2e

import (
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// The export-size tests (issue 12): exports are batched in bytes under
// OTLP_BACKEND_MAX_REQUEST_BYTES, so a backend with the common 4 MiB limit
// receives every span that senders of large requests had accepted.

// spanTracker remembers the spans the collector accepted, each with a
// unique span id (a per-tracker prefix, a sender and a sequence number),
// and counts them at the backend.
type spanTracker struct {
	prefix uint32

	mu       sync.Mutex
	seq      uint32
	accepted map[pcommon.SpanID]bool
	refused  int
	codes    map[string]int
}

func newSpanTracker() *spanTracker {
	return &spanTracker{prefix: rand.Uint32(), accepted: map[pcommon.SpanID]bool{}, codes: map[string]int{}}
}

// nextIDs reserves n span ids.
func (st *spanTracker) nextIDs(n int) []pcommon.SpanID {
	st.mu.Lock()
	defer st.mu.Unlock()
	ids := make([]pcommon.SpanID, n)
	for i := range ids {
		st.seq++
		binary.BigEndian.PutUint32(ids[i][0:4], st.prefix)
		binary.BigEndian.PutUint32(ids[i][4:8], st.seq)
	}
	return ids
}

// done records the outcome of a request holding ids.
func (st *spanTracker) done(ids []pcommon.SpanID, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err != nil {
		st.refused += len(ids)
		st.codes[err.Error()]++
		return
	}
	for _, id := range ids {
		st.accepted[id] = true
	}
}

// count is accepted, delivered (distinct accepted spans the backend
// accepted) and lost.
func (st *spanTracker) count(b *harness.Backend) (accepted, delivered, lost int) {
	seen := map[pcommon.SpanID]bool{}
	for _, r := range b.Requests() {
		if !r.Accepted {
			continue
		}
		harness.EachSpan(r.Traces, func(_ ptrace.ResourceSpans, s ptrace.Span) {
			if id := s.SpanID(); binary.BigEndian.Uint32(id[0:4]) == st.prefix {
				seen[id] = true
			}
		})
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for id := range st.accepted {
		if seen[id] {
			delivered++
		}
	}
	return len(st.accepted), delivered, len(st.accepted) - delivered
}

// waitDelivered waits until nothing accepted is missing, or timeout.
func (st *spanTracker) waitDelivered(b *harness.Backend, timeout time.Duration) (accepted, delivered, lost int) {
	deadline := time.Now().Add(timeout)
	for {
		accepted, delivered, lost = st.count(b)
		if lost == 0 || time.Now().After(deadline) {
			return accepted, delivered, lost
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// bigRequest is n spans with ids, each carrying a payload attribute of
// payload bytes (SQL, stack traces: what SDK-instrumented applications send).
func bigRequest(ids []pcommon.SpanID, payload int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "big-sender")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	now := time.Now()
	value := strings.Repeat("q", payload)
	for _, id := range ids {
		s := spans.AppendEmpty()
		var tid pcommon.TraceID
		copy(tid[:], id[:])
		s.SetTraceID(tid)
		s.SetSpanID(id)
		s.SetName("SELECT orders")
		s.SetKind(ptrace.SpanKindClient)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
		s.Attributes().PutStr("db.query.text", value)
	}
	return td
}

// sendBig has senders each send requests requests of spansPer spans of
// about payload bytes, concurrently, over OTLP/gRPC to endpoint. With
// mixed, every other sender sends requests an eighth that size, which the
// exporter merges with the large ones (and splits, where they exceed the
// limit together).
func sendBig(t *testing.T, st *spanTracker, endpoint string, senders, requests, spansPer, payload int, mixed bool) (spans int) {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client := ptraceotlp.NewGRPCClient(conn)
	var wg sync.WaitGroup
	for i := range senders {
		n := spansPer
		if mixed && i%2 == 1 {
			n = spansPer / 8
		}
		spans += requests * n
		wg.Go(func() {
			for range requests {
				ids := st.nextIDs(n)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(bigRequest(ids, payload)))
				cancel()
				st.done(ids, err)
			}
		})
	}
	wg.Wait()
	return spans
}

// exportSizes is the largest export the backend received and how many it
// refused, by transport.
func exportSizes(b *harness.Backend) (largest, refused, total int) {
	for _, r := range b.Requests() {
		total++
		largest = max(largest, r.Bytes)
		if !r.Accepted {
			refused++
		}
	}
	return largest, refused, total
}

// The harness backend refuses what real servers refuse: gRPC messages over
// 4 MiB (grpc-go's default MaxRecvMsgSize, which the backend keeps) with
// ResourceExhausted, and HTTP bodies over its limit with 413, while a
// message just under the limit is accepted.
func TestHarnessBackendRefusesOversize(t *testing.T) {
	backend := harness.StartBackend(t)
	// One span whose attribute makes the request exactly size bytes.
	request := func(size int) ptrace.Traces {
		ids := newSpanTracker().nextIDs(1)
		payload := size
		for range 10 { // length prefixes grow with the payload: converge
			td := bigRequest(ids, payload)
			got := (&ptrace.ProtoMarshaler{}).TracesSize(td)
			if got == size {
				return td
			}
			payload -= got - size
		}
		t.Fatalf("cannot build a request of exactly %d bytes", size)
		return ptrace.Traces{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	limit := harness.DefaultMaxGRPCMessage
	if err := harness.SendGRPC(ctx, backend.GRPCEndpoint(), request(limit)); err != nil {
		t.Errorf("gRPC message of exactly %d bytes: %v, want OK", limit, err)
	}
	err := harness.SendGRPC(ctx, backend.GRPCEndpoint(), request(limit+1))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC message of %d bytes: %v, want ResourceExhausted", limit+1, err)
	}
	if httpErr := harness.SendHTTP(ctx, backend.HTTPEndpoint(), "proto", request(harness.DefaultMaxHTTPBody)); httpErr != nil {
		t.Errorf("HTTP body of exactly the limit: %v, want OK", httpErr)
	}
	body, err := ptraceotlp.NewExportRequestFromTraces(request(harness.DefaultMaxHTTPBody + 1)).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := harness.PostHTTP(ctx, backend.HTTPEndpoint(), "application/x-protobuf", body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("HTTP body over the limit: %d %s, want 413", resp.Status, resp.Body)
	}
	if backend.HTTPTooLarge() != 1 {
		t.Errorf("backend counted %d bodies too large, want 1", backend.HTTPTooLarge())
	}
}

// Test 1 of issue 12: several senders push requests of 500 spans of about
// 4 KiB (2 MB each, under the receiver's 4 MiB limit) at once. Batched in
// spans, the exporter merged them into 8 MB exports that a 4 MiB backend
// refused, dropping 1 500 of 2 000 spans. Batched in bytes, no export is
// over the limit and every accepted span arrives, over gRPC and HTTP.
func TestExportLargeRequestsLoseNothing(t *testing.T) {
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			backend := harness.StartBackend(t)
			col := startShipped(t, transport, shippedEnv(backend, transport, t.TempDir()))
			st := newSpanTracker()
			sent := sendBig(t, st, col.GRPCEndpoint, 4, 4, 500, 4000, false)
			// Then large and small requests at once, merged and split.
			sent += sendBig(t, st, col.GRPCEndpoint, 4, 8, 500, 4000, true)
			accepted, delivered, lost := st.waitDelivered(backend, 90*time.Second)
			largest, refused, total := exportSizes(backend)
			t.Logf("%s export: 4 senders x 4 requests of 500 spans (about 2 MB), then 2 x 8 of 500 with 2 x 8 of 62: "+
				"accepted=%d delivered=%d lost=%d; %d exports, largest %d bytes (limit %d), %d refused by the backend; sender errors %v",
				transport, accepted, delivered, lost, total, largest, 4<<20, refused, st.codes)
			if accepted != sent {
				t.Errorf("collector accepted %d of %d spans", accepted, sent)
			}
			if lost != 0 {
				t.Errorf("%d accepted spans lost", lost)
			}
			if largest > 4<<20 || refused != 0 {
				t.Errorf("largest export %d bytes, %d refused: exports must stay within 4 MiB", largest, refused)
			}
			if failed := scrapeMetric(t, col, "otelcol_exporter_send_failed_spans"); failed != 0 {
				t.Errorf("otelcol_exporter_send_failed_spans = %.0f, want 0", failed)
			}
		})
	}
}

// Test 1, SDK part: applications instrumented with the OTel SDK send
// batches of 512 spans (the BatchSpanProcessor's default), here with 7 KB
// attributes: 3.6 MB each, accepted, and every span delivered, over gRPC
// and HTTP export.
func TestExportSDKBatchesLoseNothing(t *testing.T) {
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) { testSDKBatches(t, transport) })
	}
}

func testSDKBatches(t *testing.T, transport string) {
	backend := harness.StartBackend(t)
	col := startShipped(t, transport, shippedEnv(backend, transport, t.TempDir()))
	st := newSpanTracker()
	const senders, batches, batchSize, payload = 3, 3, 512, 7000
	value := strings.Repeat("s", payload)
	res := sdkresource.NewSchemaless(attribute.String("service.name", "sdk-app"))
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			ctx := context.Background()
			exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(col.GRPCEndpoint), otlptracegrpc.WithInsecure(),
				otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
			if err != nil {
				t.Error(err)
				return
			}
			defer func() { _ = exp.Shutdown(ctx) }()
			for range batches {
				ids := st.nextIDs(batchSize)
				stubs := make(tracetest.SpanStubs, len(ids))
				now := time.Now()
				for i, id := range ids {
					var tid oteltrace.TraceID
					copy(tid[:], id[:])
					stubs[i] = tracetest.SpanStub{
						Name: "SELECT orders",
						SpanContext: oteltrace.NewSpanContext(oteltrace.SpanContextConfig{
							TraceID: tid, SpanID: oteltrace.SpanID(id), TraceFlags: oteltrace.FlagsSampled,
						}),
						SpanKind:   oteltrace.SpanKindClient,
						StartTime:  now,
						EndTime:    now.Add(time.Millisecond),
						Attributes: []attribute.KeyValue{attribute.String("db.query.text", value)},
						Resource:   res,
					}
				}
				ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := exp.ExportSpans(ectx, stubs.Snapshots())
				cancel()
				st.done(ids, err)
			}
		})
	}
	wg.Wait()
	accepted, delivered, lost := st.waitDelivered(backend, 90*time.Second)
	largest, refused, total := exportSizes(backend)
	t.Logf("OTel SDK exporter, %d senders x %d batches of %d spans (7 KB each), %s export: accepted=%d delivered=%d lost=%d; "+
		"%d exports, largest %d bytes, %d refused; sender errors %v",
		senders, batches, batchSize, transport, accepted, delivered, lost, total, largest, refused, st.codes)
	if accepted != senders*batches*batchSize {
		t.Errorf("collector accepted %d of %d spans", accepted, senders*batches*batchSize)
	}
	if lost != 0 || refused != 0 {
		t.Errorf("%d accepted spans lost, %d exports refused by the backend", lost, refused)
	}
}

// Test 3 of issue 12: OTLP_BACKEND_MAX_REQUEST_BYTES at 1 MiB against a
// backend that refuses more than 1 MiB: requests of 2 MB are split, and
// nothing is lost.
func TestExportMaxRequestBytesSetting(t *testing.T) {
	const limit = 1 << 20
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			backend := harness.StartBackendWithLimits(t, harness.BackendLimits{GRPCMessage: limit, HTTPBody: limit})
			env := shippedEnv(backend, transport, t.TempDir())
			env["OTLP_BACKEND_MAX_REQUEST_BYTES"] = strconv.Itoa(limit)
			col := startShipped(t, transport, env)
			st := newSpanTracker()
			sent := sendBig(t, st, col.GRPCEndpoint, 4, 3, 500, 4000, true)
			accepted, delivered, lost := st.waitDelivered(backend, 90*time.Second)
			largest, refused, total := exportSizes(backend)
			t.Logf("%s export, limit 1 MiB both sides: accepted=%d delivered=%d lost=%d; %d exports, largest %d bytes, %d refused",
				transport, accepted, delivered, lost, total, largest, refused)
			if accepted != sent || lost != 0 {
				t.Errorf("accepted %d of %d, lost %d", accepted, sent, lost)
			}
			if largest > limit || refused != 0 || backend.HTTPTooLarge() != 0 {
				t.Errorf("largest export %d bytes, %d refused, %d HTTP 413: exports must stay within %d",
					largest, refused, backend.HTTPTooLarge(), limit)
			}
		})
	}
}

// Item 3 of issue 12: a backend whose limit is below ours (here 1 MiB
// against the default 4 MiB) refuses exports as too large. That answer is
// permanent (gRPC ResourceExhausted without RetryInfo, HTTP 413) and the
// exporter cannot split and retry; the loss is not silent: every span is
// counted in otelcol_exporter_send_failed_spans and the error is logged
// with its code. The cure is to lower OTLP_BACKEND_MAX_REQUEST_BYTES.
func TestExportBackendLimitBelowOursIsCounted(t *testing.T) {
	const backendLimit = 1 << 20
	for _, tc := range []struct{ transport, logged string }{
		{"grpc", "ResourceExhausted"},
		{"http", "413"},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			backend := harness.StartBackendWithLimits(t, harness.BackendLimits{GRPCMessage: backendLimit, HTTPBody: backendLimit})
			col := startShipped(t, tc.transport, shippedEnv(backend, tc.transport, t.TempDir()))
			st := newSpanTracker()
			sendBig(t, st, col.GRPCEndpoint, 2, 2, 500, 4000, false)
			accepted, delivered, lost := st.count(backend)
			var failed float64
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				accepted, delivered, lost = st.count(backend)
				failed = scrapeMetric(t, col, "otelcol_exporter_send_failed_spans")
				if lost > 0 && int(failed) >= lost {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			t.Logf("%s export to a 1 MiB backend, our limit 4 MiB: accepted=%d delivered=%d lost=%d, "+
				"otelcol_exporter_send_failed_spans=%.0f", tc.transport, accepted, delivered, lost, failed)
			if lost == 0 {
				t.Fatal("expected the backend to refuse exports over its 1 MiB limit")
			}
			if int(failed) != lost {
				t.Errorf("lost %d spans but otelcol_exporter_send_failed_spans says %.0f: a silent loss", lost, failed)
			}
			t.Logf("as scraped: %s", metricLines(t, col, "otelcol_exporter_send_failed_spans"))
			if logs := col.Logs(); !strings.Contains(logs, "Exporting failed") || !strings.Contains(logs, tc.logged) {
				t.Errorf("the refusal (%s) is not in the collector's log", tc.logged)
			}
		})
	}
}

// Test 4 of issue 12: SIGTERM while the backend fails, then a restart with
// it healthy: nothing is lost. The exporter's retry is interrupted by the
// shutdown and upstream exporterhelper logs "Exporting failed. Dropping
// data." with error "interrupted due to shutdown: ..." for batches that the
// persistent queue keeps (README "Loss guarantees"): every such line must
// say so, no other line may claim a drop, and the spans must arrive.
func TestSIGTERMWithFailingBackendLosesNothing(t *testing.T) {
	backend := harness.StartBackend(t)
	backend.SetFailure(harness.Failure{GRPCCode: codes.Unavailable})
	env := shippedEnv(backend, "grpc", t.TempDir())
	col := startShipped(t, "grpc", env)
	load := startLoad(t, col.GRPCEndpoint, loadRate, loadBatch)
	time.Sleep(4 * time.Second)
	if err := col.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := col.Wait(30 * time.Second); err != nil {
		t.Fatalf("collector did not exit cleanly on SIGTERM: %v\n%s", err, col.Logs())
	}
	load.Stop()
	logs := col.Logs()

	backend.SetFailure(harness.Failure{})
	startShipped(t, "grpc", env)
	tl := load.waitDelivered(backend, 90*time.Second)

	shutdownDrops, falseClaims := 0, 0
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "Dropping data") && !strings.Contains(line, "dropped") {
			continue
		}
		if strings.Contains(line, "interrupted due to shutdown") {
			if shutdownDrops == 0 {
				t.Logf("first such line: %s", line)
			}
			shutdownDrops++
			continue
		}
		falseClaims++
		t.Errorf("log line claims a drop: %s", line)
	}
	t.Logf("SIGTERM with the backend failing, restart healthy: %s; %d \"Dropping data ... interrupted due to shutdown\" lines "+
		"(batches kept in the queue), %d other drop lines", tl, shutdownDrops, falseClaims)
	if tl.Accepted < loadRate*2 {
		t.Errorf("only %d spans accepted: the load did not run", tl.Accepted)
	}
	if tl.Lost != 0 {
		t.Errorf("%d accepted spans lost across a SIGTERM with the backend failing", tl.Lost)
	}
}

// metricLines is the samples of a metric on the collector's Prometheus
// endpoint, with their labels, for the test's log.
func metricLines(t *testing.T, col *harness.Collector, name string) []string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + col.MetricsEndpoint + "/metrics")
	if err != nil {
		return []string{err.Error()}
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			out = append(out, line)
		}
	}
	return out
}

// A value of OTLP_BACKEND_MAX_REQUEST_BYTES the exporter cannot honor
// stops the start with an error naming the batch setting it feeds, over
// both shipped configs: below the batches' min_size (512 KiB), negative, or
// not a number of bytes.
func TestExportMaxRequestBytesInvalid(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"1000", "`max_size` (1000) must be greater or equal to `min_size` (524288)"},
		{"-1", "`max_size` must be non-negative"},
		{"4MiB", "'max_size' expected type 'int64'"},
	} {
		for _, transport := range []string{"grpc", "http"} {
			t.Run(transport+"/"+tc.value, func(t *testing.T) {
				backend := harness.StartBackend(t)
				env := shippedEnv(backend, transport, t.TempDir())
				env["OTLP_BACKEND_MAX_REQUEST_BYTES"] = tc.value
				out := runToExit(t, transport, env)
				if !strings.Contains(out, tc.want) || !strings.Contains(out, "sending_queue") {
					t.Errorf("OTLP_BACKEND_MAX_REQUEST_BYTES=%s: want %q in the error, got:\n%s", tc.value, tc.want, out)
				}
			})
		}
	}
}
