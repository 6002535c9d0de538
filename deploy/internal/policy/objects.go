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

// StatusReaderLabel marks the namespaces whose pods may read health_check's
// /status (the mesh's service list and delivery state): the operator sets it
// on monitoring namespaces. Nothing else in the cluster reaches 13133.
const StatusReaderLabel = "otelcol-istio/status-reader"

// CheckNetworkPolicy checks that a NetworkPolicy selects the collector,
// admits each receiver port, and admits the health port only from
// namespaces labeled StatusReaderLabel: never from everywhere. The kubelet's
// probes need no rule (NetworkPolicy always admits a pod's own node), and
// kubectl port-forward arrives on the pod's loopback, which no policy filters.
func CheckNetworkPolicy(np *networkingv1.NetworkPolicy, w Workload, ports []int32, healthPort int32) Findings {
	var fs Findings
	id := "NetworkPolicy/" + np.Name
	if !selectorSelects(&np.Spec.PodSelector, w.Template.Labels) {
		fs.add("netpol.selector", id, "does not select the pods of %s", w.ID())
	}
	readers := false
	for i, rule := range np.Spec.Ingress {
		if !admitsPort(rule, healthPort) {
			continue
		}
		if public := publicPeer(rule); public != "" {
			fs.add("netpol.health-public", id, "ingress rule %d admits the health port %d (/status) %s", i, healthPort, public)
		}
		for _, peer := range rule.From {
			readers = readers || statusReaders(peer)
		}
	}
	if !readers {
		fs.add("netpol.health-readers", id, "the health port %d is not admitted from namespaces labeled %s=true", healthPort, StatusReaderLabel)
	}
	for _, p := range ports {
		admitted := false
		for _, rule := range np.Spec.Ingress {
			admitted = admitted || admitsPort(rule, p)
		}
		if !admitted {
			fs.add("netpol.ports", id, "port %d is not admitted", p)
		}
	}
	return fs
}

// admitsPort: the rule lists port p, or lists no ports (all ports).
func admitsPort(rule networkingv1.NetworkPolicyIngressRule, p int32) bool {
	if len(rule.Ports) == 0 {
		return true
	}
	for _, rp := range rule.Ports {
		switch {
		case rp.Port == nil: // all ports of the protocol
			return true
		case rp.Port.Type == intstr.Int && rp.EndPort != nil:
			if rp.Port.IntVal <= p && p <= *rp.EndPort {
				return true
			}
		case rp.Port.Type == intstr.Int:
			if rp.Port.IntVal == p {
				return true
			}
		default: // a named port: may be this one
			return true
		}
	}
	return false
}

// publicPeer says how a rule admits the whole cluster (or more), or "" if
// it does not.
func publicPeer(rule networkingv1.NetworkPolicyIngressRule) string {
	if len(rule.From) == 0 {
		return "from everywhere (no from)"
	}
	for _, peer := range rule.From {
		switch {
		case peer.IPBlock != nil:
			if peer.IPBlock.CIDR == "0.0.0.0/0" || peer.IPBlock.CIDR == "::/0" {
				return "from every address (ipBlock " + peer.IPBlock.CIDR + ")"
			}
		case peer.NamespaceSelector != nil && emptySelector(peer.NamespaceSelector) &&
			(peer.PodSelector == nil || emptySelector(peer.PodSelector)):
			return "from every namespace (empty namespaceSelector)"
		}
	}
	return ""
}

// statusReaders: the peer is (pods of) the namespaces labeled
// StatusReaderLabel=true.
func statusReaders(peer networkingv1.NetworkPolicyPeer) bool {
	if peer.NamespaceSelector == nil || peer.IPBlock != nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
	if err != nil || sel.Empty() {
		return false
	}
	return sel.Matches(labels.Set{StatusReaderLabel: "true"}) && !sel.Matches(labels.Set{})
}

func emptySelector(sel *metav1.LabelSelector) bool {
	return len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0
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
