package deploy

import (
	"os"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/collectorconfig"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/manifest"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/policy"
)

// checkAll runs every workload, ConfigMap and Service rule over a set of
// decoded objects, as TestKustomizationsRender does.
func checkAll(t *testing.T, objs []manifest.Object, extra ...*corev1.ConfigMap) policy.Findings {
	t.Helper()
	return checkObjects(t, objs, extra, nil)
}

// perWorkload adds checks for one workload, given its parsed collector
// config and OTLP receivers.
type perWorkload func(w policy.Workload, cfg *collectorconfig.Config, receivers []collectorconfig.ReceiverPort) policy.Findings

// checkObjects is checkAll with more checks per workload (more may be nil).
func checkObjects(t *testing.T, objs []manifest.Object, extra []*corev1.ConfigMap, more perWorkload) policy.Findings {
	t.Helper()
	cms := append(manifest.Of[*corev1.ConfigMap](objs), extra...)
	var fs policy.Findings
	for _, cm := range cms {
		fs = append(fs, policy.CheckConfigMap(cm)...)
	}
	for _, w := range policy.Workloads(runtimeObjects(objs)) {
		_, _, text, err := w.CollectorConfig(cms)
		if err != nil {
			t.Fatal(err)
		}
		env := w.Env(cms)
		fs = append(fs, policy.CheckWorkload(w, text, env)...)
		cfg, err := collectorconfig.Parse(text, env)
		if err != nil {
			t.Fatal(err)
		}
		receivers, err := cfg.OTLPReceiverPorts()
		if err != nil {
			t.Fatal(err)
		}
		for _, svc := range manifest.Of[*corev1.Service](objs) {
			if policy.Selects(svc.Spec.Selector, w) {
				fs = append(fs, policy.CheckService(svc, receivers, w)...)
			}
		}
		if more != nil {
			fs = append(fs, more(w, cfg, receivers)...)
		}
	}
	return fs
}

func rules(fs policy.Findings) []string {
	set := map[string]bool{}
	for _, f := range fs {
		set[f.Rule] = true
	}
	var out []string
	for r := range set {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// TestSeedMistakesAreCaught runs the checks over the seed's manifests and
// shows each of its mistakes is reported.
func TestSeedMistakesAreCaught(t *testing.T) {
	objs, err := manifest.DecodeFile("testdata/seed/manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fs := checkAll(t, objs)
	for _, f := range fs {
		t.Log(f)
	}
	for _, want := range []string{
		"credential-in-configmap",                            // Authentication header with a literal token in the ConfigMap
		"plaintext-export",                                   // tls.insecure: true
		"replicas",                                           // one replica
		"rollout",                                            // maxUnavailable: 1
		"probe.liveness", "probe.readiness", "probe.startup", // health_check on, no probes
		"sidecar",                 // no sidecar.istio.io/inject: "false"
		"service.opencensus",      // 55678
		"service.port-name",       // otlp-grpc: Istio cannot tell the protocol
		"gomemlimit", "resources", // no GOMEMLIMIT, no requests
		"security.non-root", "security.read-only-root", "security.capabilities", "security.seccomp",
	} {
		if !fs.Has(want) {
			t.Errorf("seed mistake %q not caught; caught: %v", want, rules(fs))
		}
	}
}

// TestReintroducedMistakesAreCaught takes our base and puts one mistake back
// at a time: the checks report exactly that rule, and nothing else.
func TestReintroducedMistakesAreCaught(t *testing.T) {
	backend := exampleBackendConfigMap(t)
	deploymentYAML := string(readFile(t, "kubernetes/base/deployment.yaml"))
	configYAML := string(readFile(t, "kubernetes/base/config.yaml"))
	if fs := checkAll(t, baseObjects(t, deploymentYAML, configYAML), backend); len(fs) != 0 {
		t.Fatalf("the unmodified base must pass: %v", fs)
	}
	exporter := backendExporter(t, configYAML)
	cases := []struct {
		name, file, old, new, rule string
	}{
		{"single replica", "deployment", "  replicas: 2\n", "  replicas: 1\n", "replicas"},
		{"maxUnavailable 1", "deployment", "      maxUnavailable: 0\n", "      maxUnavailable: 1\n", "rollout"},
		{"missing readiness probe", "deployment", "          readinessProbe:\n            httpGet:\n              path: /\n              port: health\n            periodSeconds: 5\n            failureThreshold: 2\n            timeoutSeconds: 2\n", "", "probe.readiness"},
		{"probe on the wrong port", "deployment", "          livenessProbe:\n            httpGet:\n              path: /\n              port: health", "          livenessProbe:\n            httpGet:\n              path: /\n              port: grpc-otlp", "probe.liveness"},
		{"sidecar injected", "deployment", "      annotations:\n        sidecar.istio.io/inject: \"false\"", "      annotations:\n        sidecar.istio.io/inject: \"true\"", "sidecar"},
		{"GOMEMLIMIT above the limiter", "deployment", "value: 700MiB", "value: 1GiB", "gomemlimit"},
		{"grace too short", "deployment", "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 15", "grace"},
		{"queue not on a volume", "deployment", "              mountPath: /var/lib/otelcol-istio/queue", "              mountPath: /var/lib/otelcol-istio/elsewhere", "queue-volume"},
		{"queue volume smaller than the queue", "deployment", "            sizeLimit: 2Gi", "            sizeLimit: 1Gi", "queue-size"},
		{"queue volume without a size", "deployment", "          emptyDir:\n            sizeLimit: 2Gi", "          emptyDir: {}", "queue-size"},
		{"writable root", "deployment", "            readOnlyRootFilesystem: true", "            readOnlyRootFilesystem: false", "security.read-only-root"},
		{"root user", "deployment", "            runAsUser: 10001\n            runAsGroup: 10001\n            readOnly", "            runAsUser: 0\n            runAsGroup: 10001\n            readOnly", "security.uid"},
		{"token literal in env", "deployment", "            - name: OTLP_BACKEND_QUEUE_DIR", "            - name: OTLP_BACKEND_TOKEN\n              value: s3cret\n            - name: OTLP_BACKEND_QUEUE_DIR", "credential-in-plaintext"},
		{"MY_POD_IP not from the pod", "deployment", "              valueFrom:\n                fieldRef:\n                  fieldPath: status.podIP", "              value: 0.0.0.0", "pod-ip"},
		// Mistakes in the collector config, made on whatever exporter it has.
		{"token in the ConfigMap", "config", "\n  " + exporter + ":\n",
			"\n  " + exporter + ":\n    headers:\n      Authentication: 0123456789abcdef-token\n", "credential-in-configmap"},
		// Every occurrence: the contract's config names the endpoint in its
		// auth extension too.
		{"queue larger than its volume", "config", "      queue_size: 536870912", "      queue_size: 1073741824", "queue-size"},
		{"queue sized in items", "config", "      sizer: bytes\n      queue_size: 536870912", "      sizer: items\n      queue_size: 300000", "queue-size"},
		{"plaintext export", "config",
			"endpoint: ${env:OTLP_BACKEND_ENDPOINT}", "endpoint: http://backend.example.com:4318", "plaintext-export"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, cfg := deploymentYAML, configYAML
			target, n := &d, 1
			if c.file == "config" {
				target, n = &cfg, -1
			}
			mutated := strings.Replace(*target, c.old, c.new, n)
			if mutated == *target {
				t.Fatalf("mutation %q not applied", c.old)
			}
			*target = mutated
			fs := checkAll(t, baseObjects(t, d, cfg), backend)
			if got := rules(fs); len(got) != 1 || got[0] != c.rule {
				t.Fatalf("want exactly rule %q, got %v: %v", c.rule, got, fs)
			}
		})
	}
}

// backendExporter returns the id of the one exporter in a collector config.
func backendExporter(t *testing.T, configYAML string) string {
	t.Helper()
	cfg, err := collectorconfig.ParseRaw(configYAML)
	if err != nil {
		t.Fatal(err)
	}
	exps := cfg.Components("exporters")
	if len(exps) != 1 {
		t.Fatalf("want one exporter in the shipped config, got %d", len(exps))
	}
	return exps[0].ID
}

// baseObjects renders the base from a copy with the given deployment.yaml and
// config.yaml, so a mutation goes through kustomize like the real thing.
func baseObjects(t *testing.T, deploymentYAML, configYAML string) []manifest.Object {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir("kubernetes/base")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data := readFile(t, "kubernetes/base/"+e.Name())
		switch e.Name() {
		case "deployment.yaml":
			data = []byte(deploymentYAML)
		case "config.yaml":
			data = []byte(configYAML)
		}
		if err = os.WriteFile(dir+"/"+e.Name(), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := manifest.RenderAndDecode(dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
