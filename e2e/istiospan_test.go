package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/ptracetest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// processorTestdata holds the istio_span fixtures and their golden outputs.
var processorTestdata = filepath.Join(harness.RepoRoot(), "processor", "istiospanprocessor", "testdata")

// Istio-shaped spans sent over OTLP through the built binary reach the
// backend exactly as the processor's golden files say, for every format:
// the real pipeline (receiver, istio_span, batch, exporter) produces what the
// unit tests pin down.
func TestIstioSpanNormalisesNamesEndToEnd(t *testing.T) {
	fixtures := []string{
		"01-bookinfo-propagated-app-label-ns-istio125",
		"13-bookinfo-mixed-modes-upgrade",
		"20-bookinfo-with-application-sdk-spans",
	}
	for _, format := range []string{"APP_LABEL_AND_NAMESPACE", "CANONICAL_NAME_ONLY", "CANONICAL_NAME_AND_NAMESPACE", "preserve"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			backend, col := startIstioSpan(t, format)
			for _, fx := range fixtures {
				in := harness.ReadTraces(t, filepath.Join(processorTestdata, "input", fx+".json"))
				want, err := golden.ReadTraces(filepath.Join(processorTestdata, "expected", fx, format+".yaml"))
				if err != nil {
					t.Fatal(err)
				}
				before, baseSpans := len(backend.Requests()), backend.SpanCount()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err = harness.SendGRPC(ctx, col.GRPCEndpoint, in)
				cancel()
				if err != nil {
					t.Fatalf("%s: send: %v", fx, err)
				}
				backend.WaitForSpans(baseSpans+want.SpanCount(), 10*time.Second)
				got := harness.MergeAccepted(backend.Requests()[before:])
				if err := ptracetest.CompareTraces(want, got,
					ptracetest.IgnoreResourceSpansOrder(), ptracetest.IgnoreSpansOrder()); err != nil {
					t.Errorf("%s with %s: backend output differs from the golden file: %v", fx, format, err)
				}
				if format != "preserve" && strings.HasPrefix(fx, "13-") {
					assertOneNamePerWorkload(t, got)
				}
			}
		})
	}
}

// assertOneNamePerWorkload checks the point of the processor: every Istio
// workload (canonical service and namespace) reaches the backend under one
// service.name, however its proxies were configured.
func assertOneNamePerWorkload(t *testing.T, td ptrace.Traces) {
	t.Helper()
	names := map[string]map[string]bool{}
	harness.EachSpan(td, func(rs ptrace.ResourceSpans, s ptrace.Span) {
		name, _ := rs.Resource().Attributes().Get("service.name")
		c, okC := s.Attributes().Get("istio.canonical_service")
		n, okN := s.Attributes().Get("istio.namespace")
		if !okC || !okN {
			return
		}
		w := c.Str() + "/" + n.Str()
		if names[w] == nil {
			names[w] = map[string]bool{}
		}
		names[w][name.Str()] = true
	})
	if len(names) == 0 {
		t.Fatal("no Istio spans reached the backend")
	}
	for w, ns := range names {
		if len(ns) != 1 {
			t.Errorf("workload %s reached the backend under %d names: %v", w, len(ns), ns)
		}
	}
}
