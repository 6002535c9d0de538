package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/ptracetest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

const fixturePropagated = "testdata/01-bookinfo-propagated-app-label-ns-istio125.json"

// startForwarding starts a backend and a collector that forwards to it with
// the given exporter transport ("grpc" or "http").
func startForwarding(t *testing.T, exporter string) (*harness.Backend, *harness.Collector) {
	t.Helper()
	backend := harness.StartBackend(t)
	col := harness.StartCollector(t, harness.CollectorOptions{
		Configs: []string{"testdata/forward-" + exporter + ".yaml"},
		Env: map[string]string{
			"BACKEND_GRPC_ENDPOINT": backend.GRPCEndpoint(),
			"BACKEND_HTTP_ENDPOINT": backend.HTTPEndpoint(),
		},
	})
	return backend, col
}

// startIstioSpan starts a backend and a collector running
// testdata/istio-span.yaml (istio_span with the given service_name.format,
// forwarding over gRPC).
func startIstioSpan(t *testing.T, format string) (*harness.Backend, *harness.Collector) {
	t.Helper()
	backend := harness.StartBackend(t)
	col := harness.StartCollector(t, harness.CollectorOptions{
		Configs: []string{"testdata/istio-span.yaml"},
		Env: map[string]string{
			"BACKEND_GRPC_ENDPOINT": backend.GRPCEndpoint(),
			"ISTIO_SPAN_FORMAT":     format,
		},
	})
	return backend, col
}

// Istio-shaped spans sent over each OTLP transport and encoding reach the
// backend exactly as sent, through both exporters.
func TestFixtureArrivesIntact(t *testing.T) {
	sends := map[string]func(ctx context.Context, col *harness.Collector, td ptrace.Traces) error{
		"grpc": func(ctx context.Context, col *harness.Collector, td ptrace.Traces) error {
			return harness.SendGRPC(ctx, col.GRPCEndpoint, td)
		},
		"http-proto": func(ctx context.Context, col *harness.Collector, td ptrace.Traces) error {
			return harness.SendHTTP(ctx, "http://"+col.HTTPEndpoint, "proto", td)
		},
		"http-json": func(ctx context.Context, col *harness.Collector, td ptrace.Traces) error {
			return harness.SendHTTP(ctx, "http://"+col.HTTPEndpoint, "json", td)
		},
	}
	for _, exporter := range []string{"grpc", "http"} {
		for name, send := range sends {
			t.Run(name+"-to-"+exporter, func(t *testing.T) {
				t.Parallel()
				backend, col := startForwarding(t, exporter)
				want := harness.ReadTraces(t, fixturePropagated)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := send(ctx, col, want); err != nil {
					t.Fatalf("send: %v", err)
				}
				backend.WaitForSpans(want.SpanCount(), 10*time.Second)
				if err := ptracetest.CompareTraces(want, backend.Traces(),
					ptracetest.IgnoreResourceSpansOrder(), ptracetest.IgnoreSpansOrder()); err != nil {
					t.Fatalf("backend received different spans: %v", err)
				}
				wantTransport := exporter
				for _, r := range backend.Requests() {
					if r.Transport != wantTransport {
						t.Errorf("backend got a %s request, want %s", r.Transport, wantTransport)
					}
				}
			})
		}
	}
}

// Spans made by an application with the OTel Go SDK, exported by the SDK's
// own OTLP exporters, come out at the backend with their names and attributes.
func TestSDKExportersDeliver(t *testing.T) {
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			backend, col := startForwarding(t, "grpc")
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			var exp sdktrace.SpanExporter
			var err error
			if transport == "grpc" {
				exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(col.GRPCEndpoint), otlptracegrpc.WithInsecure())
			} else {
				exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(col.HTTPEndpoint), otlptracehttp.WithInsecure())
			}
			if err != nil {
				t.Fatal(err)
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
				sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName("sdk-app-"+transport))))
			tracer := tp.Tracer("e2e")
			_, parent := tracer.Start(ctx, "parent", trace.WithSpanKind(trace.SpanKindServer))
			_, child := tracer.Start(trace.ContextWithSpan(ctx, parent), "child",
				trace.WithAttributes(attribute.String("unicode", "zürich ✓"), attribute.Int("n", 42)))
			child.End()
			parent.End()
			if err := tp.Shutdown(ctx); err != nil {
				t.Fatalf("SDK export: %v", err)
			}
			backend.WaitForSpans(2, 10*time.Second)
			got := backend.Traces()
			rs := got.ResourceSpans().At(0)
			if name, _ := rs.Resource().Attributes().Get("service.name"); name.Str() != "sdk-app-"+transport {
				t.Errorf("service.name = %q", name.Str())
			}
			spans := rs.ScopeSpans().At(0).Spans()
			byName := map[string]int{}
			for i := 0; i < spans.Len(); i++ {
				byName[spans.At(i).Name()] = i
			}
			c, ok := byName["child"]
			if !ok || spans.Len() != 2 {
				t.Fatalf("want spans parent and child, got %v", byName)
			}
			child0 := spans.At(c)
			if v, _ := child0.Attributes().Get("unicode"); v.Str() != "zürich ✓" {
				t.Errorf("attribute unicode = %q", v.Str())
			}
			if v, _ := child0.Attributes().Get("n"); v.Int() != 42 {
				t.Errorf("attribute n = %d", v.Int())
			}
			if child0.ParentSpanID() != spans.At(byName["parent"]).SpanID() {
				t.Error("child lost its parent span id")
			}
		})
	}
}

// telemetrygen, the collector project's own load generator, gets every span
// through.
func TestTelemetrygenDelivers(t *testing.T) {
	tg := harness.Telemetrygen(t)
	backend, col := startForwarding(t, "grpc")
	out, err := exec.Command(tg, "traces", "--otlp-endpoint", col.GRPCEndpoint, "--otlp-insecure",
		"--traces", "50", "--rate", "0", "--service", "telemetrygen-e2e").CombinedOutput()
	if err != nil {
		t.Fatalf("telemetrygen: %v\n%s", err, out)
	}
	// telemetrygen makes a parent and a child span per trace.
	backend.WaitForSpans(100, 15*time.Second)
	if got := backend.SpanCount(); got != 100 {
		t.Fatalf("backend got %d spans, want exactly 100", got)
	}
}

// Every config we ship passes the binary's own validation.
func TestValidateShippedConfigs(t *testing.T) {
	configs, err := filepath.Glob(filepath.Join(harness.RepoRoot(), "distribution", "config*.yaml"))
	if err != nil || len(configs) == 0 {
		t.Fatalf("no shipped configs found: %v", err)
	}
	for _, cfg := range configs {
		t.Run(filepath.Base(cfg), func(t *testing.T) {
			env := shippedConfigEnv(t)
			if filepath.Base(cfg) == "config-http.yaml" {
				env["OTLP_BACKEND_ENDPOINT"] = "https://backend.example:4318" // OTLP/HTTP takes a base URL
			}
			out, err := harness.RunBinary(t, env, "validate", "--config", cfg)
			if err != nil {
				t.Fatalf("validate %s: %v\n%s", cfg, err, out)
			}
		})
	}
}

// shippedConfigEnv is what the production configs need to resolve; values are
// placeholders, as `validate` starts nothing.
func shippedConfigEnv(t *testing.T) map[string]string {
	return map[string]string{
		"OTLP_BACKEND_ENDPOINT":  "backend.example:4317",
		"OTLP_BACKEND_TOKEN":     "validate-only",
		"OTLP_BACKEND_QUEUE_DIR": t.TempDir(),
	}
}

// validate rejects broken configs with a message that says what is wrong.
func TestValidateRejectsBrokenConfig(t *testing.T) {
	cases := map[string][]string{
		"testdata/broken-unknown-exporter.yaml": {"otlp_grpc", "not configured"},
		"testdata/broken-unknown-key.yaml":      {"endpont", "invalid keys"},
	}
	for cfg, wantWords := range cases {
		t.Run(filepath.Base(cfg), func(t *testing.T) {
			out, err := harness.RunBinary(t, nil, "validate", "--config", cfg)
			if err == nil {
				t.Fatalf("validate accepted %s:\n%s", cfg, out)
			}
			for _, w := range wantWords {
				if !strings.Contains(out, w) {
					t.Errorf("validate's message lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// What `make run` starts: the local config accepts an OTLP/JSON POST and
// prints the span, with its service, in the terminal.
func TestLocalConfigPrintsSpans(t *testing.T) {
	col := harness.StartCollector(t, harness.CollectorOptions{
		Configs: []string{filepath.Join(harness.RepoRoot(), "distribution", "config.local.yaml")},
	})
	body, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "e2e", "testdata", "curl-span.json"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := harness.PostHTTP(ctx, "http://"+col.HTTPEndpoint, "application/json", body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("POST /v1/traces: %d %s", resp.Status, resp.Body)
	}
	col.WaitForLog("readme-example-span", 10*time.Second)
	col.WaitForLog("curl-example", 5*time.Second)
}
