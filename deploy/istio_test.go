package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/collectorconfig"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/istioconfig"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/manifest"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/policy"
)

// istioProviderService is the host every Istio file sends spans to.
const istioProviderService = "otelcol-istio.observability.svc.cluster.local"

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func istioOperator(t *testing.T, name string) *istioconfig.IstioOperator {
	t.Helper()
	io, err := istioconfig.DecodeIstioOperator(readFile(t, filepath.Join("istio", name)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return io
}

// TestIstioObjectsDecodeStrictly decodes every file under deploy/istio.
func TestIstioObjectsDecodeStrictly(t *testing.T) {
	files, err := filepath.Glob("istio/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 6 {
		t.Fatalf("want 6 Istio files, got %v", files)
	}
	for _, f := range files {
		b := readFile(t, f)
		switch base := filepath.Base(f); {
		case strings.HasPrefix(base, "istiooperator-"):
			_, err = istioconfig.DecodeIstioOperator(b)
		case strings.HasPrefix(base, "helm-values-"):
			_, err = istioconfig.DecodeHelmValues(b)
		case strings.HasPrefix(base, "telemetry-"):
			_, err = istioconfig.DecodeTelemetry(b)
		default:
			t.Errorf("%s: unknown kind of file", f)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestIstioStrictDecodingRejectsMistakes: misspelled MeshConfig and Telemetry
// fields fail, as do unknown envelope fields.
func TestIstioStrictDecodingRejectsMistakes(t *testing.T) {
	io := string(readFile(t, "istio/istiooperator-http.yaml"))
	tel := string(readFile(t, "istio/telemetry-trial.yaml"))
	cases := []struct {
		name, doc, old, new, want string
		decode                    func([]byte) error
	}{
		{"extensionProviders misspelled", io, "extensionProviders:", "extensionProvider:", "extensionProvider", decodeIO},
		{"opentelemetry misspelled", io, "opentelemetry:", "openTelemetry:", "openTelemetry", decodeIO},
		{"http path misspelled", io, "path: /v1/traces", "paths: /v1/traces", "paths", decodeIO},
		{"bad duration", io, "timeout: 5s", "timeout: 5 seconds", "5 seconds", decodeIO},
		{"bad tracingServiceName", io, "CANONICAL_NAME_AND_NAMESPACE", "CANONICAL_NAME_AND_NS", "CANONICAL_NAME_AND_NS", decodeIO},
		{"unknown spec field", io, "  profile: default", "  profile: default\n  meshconfig: {}", "meshconfig", decodeIO},
		{"sampling misspelled", tel, "randomSamplingPercentage: 100", "randomSamplingPercent: 100", "randomSamplingPercent", decodeTelemetry},
		{"providers misspelled", tel, "- providers:", "- provider:", "provider", decodeTelemetry},
		{"metadata misspelled", tel, "  namespace: istio-system", "  namspace: istio-system", "namspace", decodeTelemetry},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := strings.Replace(c.doc, c.old, c.new, 1)
			if bad == c.doc {
				t.Fatalf("mutation %q not applied", c.old)
			}
			if err := c.decode([]byte(bad)); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an error mentioning %q, got %v", c.want, err)
			}
		})
	}
}

func decodeIO(b []byte) error        { _, err := istioconfig.DecodeIstioOperator(b); return err }
func decodeTelemetry(b []byte) error { _, err := istioconfig.DecodeTelemetry(b); return err }

// TestHelmValuesMatchIstioOperator: the Helm values carry the same meshConfig.
func TestHelmValuesMatchIstioOperator(t *testing.T) {
	for _, transport := range []string{"grpc", "http"} {
		io := istioOperator(t, "istiooperator-"+transport+".yaml")
		hv, err := istioconfig.DecodeHelmValues(readFile(t, "istio/helm-values-"+transport+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(io.Mesh, hv.Mesh) {
			t.Errorf("%s: helm values meshConfig differs from the IstioOperator's:\n%v\n%v", transport, hv.Mesh, io.Mesh)
		}
	}
}

// TestIstioProvidersMatchTheCollector: each provider sends to the Service's
// DNS name, on the Service port (and receiver port) of its protocol; the HTTP
// one on the receiver's traces path; and the Telemetry resources name it.
func TestIstioProvidersMatchTheCollector(t *testing.T) {
	objs := render(t, "kubernetes/base")
	backend := exampleBackendConfigMap(t)
	cms := append(manifest.Of[*corev1.ConfigMap](objs), backend)
	w := collectorWorkload(t, objs)
	_, _, cfgText, err := w.CollectorConfig(cms)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := collectorconfig.Parse(cfgText, w.Env(cms))
	if err != nil {
		t.Fatal(err)
	}
	receivers, err := cfg.OTLPReceiverPorts()
	if err != nil {
		t.Fatal(err)
	}
	receiverPort := map[string]int32{}
	for _, r := range receivers {
		receiverPort[r.Protocol] = r.Port
	}
	var svc *corev1.Service
	for _, s := range manifest.Of[*corev1.Service](objs) {
		if s.Name == "otelcol-istio" {
			svc = s
		}
	}
	if svc == nil {
		t.Fatal("no Service otelcol-istio")
	}
	servicePort := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		servicePort[strings.TrimSuffix(p.Name, "-otlp")] = p.Port
	}

	names := map[string]bool{}
	for _, transport := range []string{"grpc", "http"} {
		io := istioOperator(t, "istiooperator-"+transport+".yaml")
		providers := istioconfig.OpenTelemetryProviders(io.Mesh)
		if len(providers) != 1 {
			t.Fatalf("%s: want one opentelemetry provider, got %d", transport, len(providers))
		}
		for name, p := range providers {
			names[name] = true
			if p.GetService() != policy.DNSName(svc) {
				t.Errorf("%s: provider service %q, want the Service's DNS name %q", transport, p.GetService(), policy.DNSName(svc))
			}
			if int32(p.GetPort()) != servicePort[transport] || int32(p.GetPort()) != receiverPort[transport] {
				t.Errorf("%s: provider port %d, Service %s port %d, receiver port %d: all three must agree",
					transport, p.GetPort(), transport, servicePort[transport], receiverPort[transport])
			}
			if transport == "http" && p.GetHttp().GetPath() != "/v1/traces" {
				t.Errorf("http: provider path %q, want the OTLP/HTTP receiver's /v1/traces", p.GetHttp().GetPath())
			}
			if transport == "grpc" && p.GetHttp() != nil {
				t.Errorf("grpc: provider has an http block, which makes Envoy send OTLP/HTTP")
			}
		}
		if got := io.Mesh.GetDefaultConfig().GetTracingServiceName().String(); got != "CANONICAL_NAME_AND_NAMESPACE" {
			t.Errorf("%s: tracingServiceName %s, want CANONICAL_NAME_AND_NAMESPACE (deploy/istio/README.md)", transport, got)
		}
	}
	if len(names) != 1 {
		t.Errorf("gRPC and HTTP providers must share one name so the Telemetry files work with either, got %v", names)
	}

	rates := map[string]float64{}
	for _, f := range []string{"telemetry-trial.yaml", "telemetry-production.yaml"} {
		tel, err := istioconfig.DecodeTelemetry(readFile(t, filepath.Join("istio", f)))
		if err != nil {
			t.Fatal(err)
		}
		if tel.Metadata.Namespace != "istio-system" {
			t.Errorf("%s: namespace %q, want istio-system (the mesh-wide default)", f, tel.Metadata.Namespace)
		}
		if len(tel.Spec.GetTracing()) != 1 {
			t.Fatalf("%s: want one tracing entry", f)
		}
		tr := tel.Spec.GetTracing()[0]
		for _, p := range tr.GetProviders() {
			if !names[p.GetName()] {
				t.Errorf("%s: provider %q is not registered in extensionProviders %v", f, p.GetName(), names)
			}
		}
		if tr.GetRandomSamplingPercentage() == nil {
			t.Errorf("%s: no randomSamplingPercentage (Istio would default to 1%%)", f)
		}
		rates[f] = tr.GetRandomSamplingPercentage().GetValue()
	}
	if rates["telemetry-trial.yaml"] != 100 {
		t.Errorf("trial sampling %v%%, want 100%%", rates["telemetry-trial.yaml"])
	}
	if r := rates["telemetry-production.yaml"]; r <= 0 || r > 5 {
		t.Errorf("production sampling %v%%, want a low rate in (0, 5]", r)
	}
}
