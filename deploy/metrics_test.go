package deploy

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/collectorconfig"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/manifest"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/policy"
)

// TestMetricsPortAgrees: the collector's own Prometheus endpoint (the
// service::telemetry::metrics pull reader) listens on the pod IP, on the port
// that the container names "metrics", and the NetworkPolicy admits that
// port. (e2e TestShippedConfigMetricsOnPodIP runs the binary on the same
// config and reads the endpoint where the config says.)
func TestMetricsPortAgrees(t *testing.T) {
	backend := exampleBackendConfigMap(t)
	for _, dir := range kustomizations {
		objs := render(t, dir)
		cms := append(manifest.Of[*corev1.ConfigMap](objs), backend)
		for _, w := range policy.Workloads(runtimeObjects(objs)) {
			if !strings.HasPrefix(w.Container().Image, "ghcr.io/otelcol-istio/") {
				continue // the loadbalancing tier runs upstream contrib
			}
			_, _, text, err := w.CollectorConfig(cms)
			if err != nil {
				t.Fatal(err)
			}
			env := w.Env(cms)
			cfg, err := collectorconfig.Parse(text, env)
			if err != nil {
				t.Fatal(err)
			}
			id := dir + " " + w.ID()
			host, port := prometheusReader(cfg)
			if host == "" {
				t.Errorf("%s: no Prometheus pull reader under service::telemetry::metrics::readers", id)
				continue
			}
			if podIP := env["MY_POD_IP"]; podIP == "" || strings.Trim(host, "[]") != podIP {
				t.Errorf("%s: the metrics endpoint binds to %q, want the pod IP (MY_POD_IP=%q) in brackets", id, host, podIP)
			}
			if !strings.HasPrefix(host, "[") {
				t.Errorf("%s: the metrics host %q needs brackets for an IPv6 pod IP", id, host)
			}
			var containerPort string
			for _, p := range w.Container().Ports {
				if p.Name == "metrics" {
					containerPort = strconv.Itoa(int(p.ContainerPort))
				}
			}
			if containerPort != port {
				t.Errorf("%s: the metrics endpoint listens on port %q, the container's \"metrics\" port is %q", id, port, containerPort)
			}
			var admitted bool
			for _, np := range manifest.Of[*networkingv1.NetworkPolicy](objs) {
				if np.Name != w.Name {
					continue
				}
				for _, rule := range np.Spec.Ingress {
					for _, p := range rule.Ports {
						admitted = admitted || (p.Port != nil && p.Port.Type == intstr.Int && strconv.Itoa(int(p.Port.IntVal)) == port)
					}
				}
			}
			if !admitted {
				t.Errorf("%s: the NetworkPolicy %s does not name the metrics port %s", id, w.Name, port)
			}
		}
	}
}

// prometheusReader returns host and port of the first Prometheus pull reader.
func prometheusReader(cfg *collectorconfig.Config) (host, port string) {
	readers, _ := collectorconfig.Get(cfg.Raw, "service", "telemetry", "metrics", "readers")
	list, _ := readers.([]any)
	for _, r := range list {
		m, _ := r.(map[string]any)
		prom, ok := collectorconfig.Get(m, "pull", "exporter", "prometheus")
		if !ok {
			continue
		}
		pm, _ := prom.(map[string]any)
		return fmt.Sprint(pm["host"]), fmt.Sprint(pm["port"])
	}
	return "", ""
}
