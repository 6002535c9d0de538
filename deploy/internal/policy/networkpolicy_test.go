package policy

import (
	"slices"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The rules each NetworkPolicy shape breaks: /status is never open to the
// cluster, and is open to the status-reader namespaces.
func TestCheckNetworkPolicyHealthPort(t *testing.T) {
	const head = `
podSelector:
  matchLabels: {app: c}
ingress:
  - from:
      - namespaceSelector:
          matchLabels: {istio-injection: enabled}
    ports: [{port: 4317}, {port: 4318}]
`
	const readers = `
  - from:
      - namespaceSelector:
          matchLabels: {otelcol-istio/status-reader: "true"}
    ports: [{port: 13133}]
`
	for _, c := range []struct {
		name, spec string
		want       []string
	}{
		{"shipped shape", head + readers, nil},
		{"readers as an expression, some pods only", head + `
  - from:
      - namespaceSelector:
          matchExpressions: [{key: otelcol-istio/status-reader, operator: In, values: ["true"]}]
        podSelector:
          matchLabels: {app: prometheus}
    ports: [{port: 13133}]
`, nil},
		{"the old rule: 13133 from anywhere", head + `
  - ports: [{port: 13133}]
`, []string{"netpol.health-public", "netpol.health-readers"}},
		{"readers, and every port from everywhere", head + readers + `
  - {}
`, []string{"netpol.health-public"}},
		{"every namespace", head + readers + `
  - from: [{namespaceSelector: {}}]
    ports: [{port: 13133}]
`, []string{"netpol.health-public"}},
		{"every address", head + readers + `
  - from: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{port: 13000, endPort: 14000}]
`, []string{"netpol.health-public"}},
		{"no readers", head, []string{"netpol.health-readers"}},
		{"readers label on pods, not namespaces", head + `
  - from:
      - podSelector:
          matchLabels: {otelcol-istio/status-reader: "true"}
    ports: [{port: 13133}]
`, []string{"netpol.health-readers"}},
		{"a receiver port missing", `
podSelector:
  matchLabels: {app: c}
ingress:
  - from: [{namespaceSelector: {matchLabels: {istio-injection: enabled}}}]
    ports: [{port: 4317}]
` + readers, []string{"netpol.ports"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var spec networkingv1.NetworkPolicySpec
			if err := yaml.UnmarshalStrict([]byte(c.spec), &spec); err != nil {
				t.Fatal(err)
			}
			np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: spec}
			w := Workload{Kind: "Deployment", Name: "c", Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "c"}}}}
			fs := CheckNetworkPolicy(np, w, []int32{4317, 4318}, 13133)
			var got []string
			for _, f := range fs {
				if !slices.Contains(got, f.Rule) {
					got = append(got, f.Rule)
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("rules %v, want %v: %v", got, c.want, fs)
			}
		})
	}
}
