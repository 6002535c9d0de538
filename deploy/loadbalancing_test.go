package deploy

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/collectorconfig"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/manifest"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/policy"
)

// Routing keys contrib's loadbalancing exporter accepts for traces
// (exporter/loadbalancingexporter trace_exporter.go: traceID, service,
// attributes with routing_attributes).
var traceRoutingKeys = []string{"traceID", "service", "attributes"}

// loadbalancerTier renders the loadbalancing overlay and returns its
// objects, the first-tier workload and that workload's collector config.
func loadbalancerTier(t *testing.T) ([]manifest.Object, *policy.Workload, *collectorconfig.Config) {
	t.Helper()
	objs := render(t, "kubernetes/overlays/loadbalancing")
	cms := manifest.Of[*corev1.ConfigMap](objs)
	var lb *policy.Workload
	for _, w := range policy.Workloads(runtimeObjects(objs)) {
		if w.Template.Labels["app.kubernetes.io/component"] == "loadbalancer" {
			lb = &w
		}
	}
	if lb == nil {
		t.Fatal("no loadbalancer workload")
	}
	_, _, text, err := lb.CollectorConfig(cms)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := collectorconfig.Parse(text, lb.Env(cms))
	if err != nil {
		t.Fatal(err)
	}
	return objs, lb, cfg
}

// TestLoadbalancingTier checks the first tier's collector config: the
// upstream contrib image cannot run here, so its `validate` cannot either;
// these are the facts the tier depends on.
func TestLoadbalancingTier(t *testing.T) {
	objs, _, cfg := loadbalancerTier(t)
	var headless *corev1.Service
	for _, svc := range manifest.Of[*corev1.Service](objs) {
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			headless = svc
		}
	}
	if headless == nil {
		t.Fatal("no headless Service for the second tier")
	}
	collector := collectorWorkload(t, objs)
	if !policy.Selects(headless.Spec.Selector, collector) {
		t.Errorf("headless Service %s does not select the otelcol-istio pods", headless.Name)
	}

	exporters := cfg.OfType("exporters", "loadbalancing")
	if len(exporters) != 2 {
		t.Fatalf("want two loadbalancing exporters (by request id, by trace id), got %d", len(exporters))
	}
	var byRequestID bool
	for _, e := range exporters {
		key := collectorconfig.GetString(e.Settings, "routing_key")
		if !slices.Contains(traceRoutingKeys, key) {
			t.Errorf("%s: routing_key %q, want one of %v", e.ID, key, traceRoutingKeys)
		}
		if key == "attributes" {
			attrs, _ := e.Settings["routing_attributes"].([]any)
			byRequestID = len(attrs) == 1 && attrs[0] == "guid:x-request-id"
		}
		if host := collectorconfig.GetString(e.Settings, "resolver", "dns", "hostname"); host != policy.DNSName(headless) {
			t.Errorf("%s: resolves %q, want the headless Service %q", e.ID, host, policy.DNSName(headless))
		}
		if port := collectorconfig.GetString(e.Settings, "resolver", "dns", "port"); port != "4317" || !slices.Contains(policy.ServicePorts(headless), 4317) {
			t.Errorf("%s: port %q, want the second tier's OTLP/gRPC 4317", e.ID, port)
		}
	}
	if !byRequestID {
		t.Error("no exporter routes by routing_attributes [guid:x-request-id]")
	}
	// Spans with the attribute go to the request-id exporter, the rest by trace id.
	table, _ := collectorconfig.Get(cfg.Raw, "connectors", "routing", "table")
	rows, _ := table.([]any)
	if len(rows) != 1 {
		t.Fatalf("want one routing rule, got %v", table)
	}
	row, _ := rows[0].(map[string]any)
	if row["context"] != "span" || row["condition"] != `attributes["guid:x-request-id"] != nil` {
		t.Errorf("routing rule %v: want context span on guid:x-request-id", row)
	}
	pipes := cfg.Pipelines()
	for want, exporter := range map[string]string{"traces/by_request_id": "loadbalancing/request_id", "traces/by_trace_id": "loadbalancing/trace_id"} {
		if p, ok := pipes[want]; !ok || !slices.Equal(p.Exporters, []string{exporter}) || !slices.Equal(p.Receivers, []string{"routing"}) {
			t.Errorf("pipeline %s: want routing -> %s, got %+v", want, exporter, p)
		}
	}
}

// Issue 29 item 3: the first tier is not ready while the second tier has no
// ready pod. The loadbalancing exporter reports no component status, so
// health_check cannot see it; a container in the first-tier pod resolves the
// exporters' resolver hostname in its readiness probe, and the pod is ready
// only while every container is. This checks the wiring: the probe resolves
// exactly the name every loadbalancing exporter reads, the headless Service
// lists only ready pods (so the name has no address without one), the probe
// runs as often as the resolver re-reads, and the container is hardened
// (policy.CheckWorkload holds every extra container to the collector's
// rules).
func TestLoadbalancingTierNotReadyWithoutSecondTier(t *testing.T) {
	objs, lb, cfg := loadbalancerTier(t)
	hosts := map[string]bool{}
	for _, e := range cfg.OfType("exporters", "loadbalancing") {
		hosts[collectorconfig.GetString(e.Settings, "resolver", "dns", "hostname")] = true
	}
	if len(hosts) != 1 {
		t.Fatalf("want every loadbalancing exporter to resolve one name, got %v", hosts)
	}
	var probed []string
	for _, c := range lb.Template.Spec.Containers[1:] {
		p := c.ReadinessProbe
		if p == nil || p.Exec == nil || len(p.Exec.Command) != 2 || p.Exec.Command[0] != "nslookup" {
			continue
		}
		probed = append(probed, p.Exec.Command[1])
		if !hosts[p.Exec.Command[1]] {
			t.Errorf("container %s resolves %q, the exporters resolve %v", c.Name, p.Exec.Command[1], hosts)
		}
		// The resolver's default interval is 5 s; one failure makes the pod
		// unready, within one period.
		if p.PeriodSeconds > 5 || p.FailureThreshold != 1 || p.TimeoutSeconds < 1 {
			t.Errorf("container %s: probe every %d s, unready after %d failures: want <= 5 s and 1", c.Name, p.PeriodSeconds, p.FailureThreshold)
		}
		if c.LivenessProbe != nil {
			t.Errorf("container %s: a liveness probe would restart the pod when the second tier is down", c.Name)
		}
	}
	if len(probed) != 1 {
		t.Fatalf("want one container whose readiness probe resolves the second tier's name, got %v", probed)
	}
	for _, svc := range manifest.Of[*corev1.Service](objs) {
		if policy.DNSName(svc) == probed[0] {
			if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.PublishNotReadyAddresses {
				t.Errorf("Service %s must be headless and list only ready pods, or its name resolves without a ready second tier", svc.Name)
			}
			return
		}
	}
	t.Errorf("no Service named %s", probed[0])
}
