package collectorbench

import (
	"math"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// The sink's wire-format span count agrees with pdata on every export of
// the benchmark's pool, so "lost" means lost.
func TestCountSpansMatchesPdata(t *testing.T) {
	pool, err := Pool(3000, 5)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, q := range pool {
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(q.Body); err != nil {
			t.Fatal(err)
		}
		if got, want := countSpans(q.Body), req.Traces().SpanCount(); got != want || q.Spans != want {
			t.Fatalf("countSpans %d, Request.Spans %d, pdata %d", got, q.Spans, want)
		}
		total += q.Spans
	}
	if total < 3000 {
		t.Errorf("pool holds %d spans, want at least 3000", total)
	}
	if countSpans([]byte{0xff, 0xff}) != 0 {
		t.Error("garbage counted as spans")
	}
}

func TestMicroTable(t *testing.T) {
	out := `goos: linux
BenchmarkIstioSpan/mixed-2   2442  430482 ns/op  67.32 B/span  4.823 allocs/resource  0.8730 allocs/span  430.5 ns/span  67312 B/op  873 allocs/op
BenchmarkOther-2   10  5 ns/op
PASS`
	table := microTable(out)
	if !strings.Contains(table, "| BenchmarkIstioSpan/mixed-2 | 430.5 | 67.32 | 0.8730 | 4.823 |  |  |  |") {
		t.Errorf("table:\n%s", table)
	}
	if strings.Contains(table, "BenchmarkOther") {
		t.Error("a benchmark without per-span figures is listed")
	}
}

func TestCostModel(t *testing.T) {
	// 10 µs per span plus 40 µs per request.
	perReq, perSpan, ok := CostModel(5, 10+40.0/5, 50, 10+40.0/50)
	if !ok || math.Abs(perReq-40) > 1e-9 || math.Abs(perSpan-10) > 1e-9 {
		t.Fatalf("CostModel = %v, %v, %v; want 40, 10, true", perReq, perSpan, ok)
	}
	if _, _, ok := CostModel(5, 10, 5, 10); ok {
		t.Error("one request size cannot be split")
	}
}
