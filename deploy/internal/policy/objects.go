package policy

import (
	"fmt"
	"sort"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/collectorconfig"
)

// OpenCensusPort is the seed's leftover port; nothing listens on it.
const OpenCensusPort = 55678

// wantPortNames are the Service port names and appProtocols per OTLP protocol:
// Istio reads the protocol from the name prefix, everything else from appProtocol.
var wantPortNames = map[string]struct{ name, appProtocol string }{
	"grpc": {"grpc-otlp", "grpc"},
	"http": {"http-otlp", "http"},
}

// CheckService checks that a Service in front of the collector exposes
// exactly the receiver ports, named for their protocol, and selects its pods.
func CheckService(svc *corev1.Service, receivers []collectorconfig.ReceiverPort, w Workload) Findings {
	var fs Findings
	id := "Service/" + svc.Name
	if !Selects(svc.Spec.Selector, w) {
		fs.add("service.selector", id, "selector %v does not select the pods of %s", svc.Spec.Selector, w.ID())
	}
	byPort := map[int32]corev1.ServicePort{}
	for _, p := range svc.Spec.Ports {
		byPort[p.Port] = p
		if p.Port == OpenCensusPort {
			fs.add("service.opencensus", id, "port %d (OpenCensus) has no receiver behind it", p.Port)
		}
	}
	want := map[int32]bool{}
	for _, r := range receivers {
		want[r.Port] = true
		p, ok := byPort[r.Port]
		if !ok {
			fs.add("service.ports", id, "receiver %s %s port %d is not a Service port", r.Receiver, r.Protocol, r.Port)
			continue
		}
		n := wantPortNames[r.Protocol]
		if p.Name != n.name {
			fs.add("service.port-name", id, "port %d must be named %q (Istio reads the protocol from the name), got %q", p.Port, n.name, p.Name)
		}
		if p.AppProtocol == nil || *p.AppProtocol != n.appProtocol {
			fs.add("service.app-protocol", id, "port %d must have appProtocol %q", p.Port, n.appProtocol)
		}
		if target := p.TargetPort; target.Type == intstr.String || target.IntVal != 0 {
			if cp, ok := containerPort(w.Container(), target); !ok || cp != r.Port {
				fs.add("service.target-port", id, "port %d targets %s, not the receiver's container port %d", p.Port, target.String(), r.Port)
			}
		}
	}
	for _, p := range svc.Spec.Ports {
		if !want[p.Port] && p.Port != OpenCensusPort {
			fs.add("service.ports", id, "port %d (%s) has no receiver behind it", p.Port, p.Name)
		}
	}
	return fs
}

// CheckPodDisruptionBudget checks that a PDB covers the workload and never
// lets a voluntary disruption take every replica.
func CheckPodDisruptionBudget(pdb *policyv1.PodDisruptionBudget, w Workload, minReplicas int32) Findings {
	var fs Findings
	id := "PodDisruptionBudget/" + pdb.Name
	if !selectorSelects(pdb.Spec.Selector, w.Template.Labels) {
		fs.add("pdb.selector", id, "does not select the pods of %s", w.ID())
	}
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		v, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, int(minReplicas), true)
		if err != nil || v < 1 || v >= int(minReplicas) {
			fs.add("pdb.budget", id, "maxUnavailable %s must allow draining (>= 1) and keep a replica (< %d)", pdb.Spec.MaxUnavailable.String(), minReplicas)
		}
	case pdb.Spec.MinAvailable != nil:
		v, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, int(minReplicas), true)
		if err != nil || v < 1 || v >= int(minReplicas) {
			fs.add("pdb.budget", id, "minAvailable %s must keep a replica (>= 1) and allow draining (< %d)", pdb.Spec.MinAvailable.String(), minReplicas)
		}
	default:
		fs.add("pdb.budget", id, "neither maxUnavailable nor minAvailable set")
	}
	return fs
}

// CheckHorizontalPodAutoscaler checks that the HPA scales the workload and
// never below two replicas.
func CheckHorizontalPodAutoscaler(hpa *autoscalingv2.HorizontalPodAutoscaler, w Workload) Findings {
	var fs Findings
	id := "HorizontalPodAutoscaler/" + hpa.Name
	ref := hpa.Spec.ScaleTargetRef
	if ref.Kind != w.Kind || ref.Name != w.Name || ref.APIVersion != "apps/v1" {
		fs.add("hpa.target", id, "scaleTargetRef %s %s/%s is not %s", ref.APIVersion, ref.Kind, ref.Name, w.ID())
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
		fs.add("hpa.min", id, "minReplicas must be at least 2")
	}
	if w.Replicas != nil && hpa.Spec.MinReplicas != nil && *w.Replicas < *hpa.Spec.MinReplicas {
		fs.add("hpa.min", id, "%s starts with %d replicas, below minReplicas %d", w.ID(), *w.Replicas, *hpa.Spec.MinReplicas)
	}
	if hpa.Spec.MaxReplicas <= deref32(hpa.Spec.MinReplicas) {
		fs.add("hpa.max", id, "maxReplicas %d leaves no room to scale", hpa.Spec.MaxReplicas)
	}
	if len(hpa.Spec.Metrics) == 0 {
		fs.add("hpa.metrics", id, "no metrics")
	}
	return fs
}

// CheckNetworkPolicy checks that a NetworkPolicy selects the collector and
// admits each receiver port and the health port.
func CheckNetworkPolicy(np *networkingv1.NetworkPolicy, w Workload, ports []int32, healthPort int32) Findings {
	var fs Findings
	id := "NetworkPolicy/" + np.Name
	if !selectorSelects(&np.Spec.PodSelector, w.Template.Labels) {
		fs.add("netpol.selector", id, "does not select the pods of %s", w.ID())
	}
	admitted := map[int32]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port != nil && p.Port.Type == intstr.Int {
				admitted[p.Port.IntVal] = true
			}
		}
	}
	for _, p := range append(append([]int32{}, ports...), healthPort) {
		if !admitted[p] {
			fs.add("netpol.ports", id, "port %d is not admitted", p)
		}
	}
	return fs
}

// ServicePorts returns a Service's ports, sorted.
func ServicePorts(svc *corev1.Service) []int32 {
	var out []int32
	for _, p := range svc.Spec.Ports {
		out = append(out, p.Port)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// DNSName is the cluster DNS name of a Service.
func DNSName(svc *corev1.Service) string {
	return fmt.Sprintf("%s.%s.svc.cluster.local", svc.Name, svc.Namespace)
}

// Selects reports whether a Service selector (non-empty) matches the
// workload's pod labels.
func Selects(sel map[string]string, w Workload) bool {
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.Template.Labels))
}

func selectorSelects(sel *metav1.LabelSelector, podLabels map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && s.Matches(labels.Set(podLabels))
}

func deref32(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}
