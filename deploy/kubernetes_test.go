package deploy

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/collectorconfig"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/manifest"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/policy"
)

// notKubernetes are YAML files under deploy/kubernetes that are not
// Kubernetes objects: kustomizations and collector configs.
func notKubernetes(path string) bool {
	base := filepath.Base(path)
	return base == "kustomization.yaml" || base == "config.yaml" || strings.HasSuffix(base, "-config.yaml")
}

// TestManifestFilesDecodeStrictly decodes every Kubernetes file as written,
// patches included, into its k8s.io/api type with unknown fields rejected.
func TestManifestFilesDecodeStrictly(t *testing.T) {
	n := 0
	err := filepath.WalkDir("kubernetes", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" || notKubernetes(path) {
			return err
		}
		objs, err := manifest.DecodeFile(path)
		if err != nil {
			t.Error(err)
		}
		if len(objs) == 0 && err == nil {
			t.Errorf("%s: no objects", path)
		}
		n += len(objs)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 17 {
		t.Fatalf("decoded only %d objects: files went missing?", n)
	}
}

// TestStrictDecodingRejectsMistakes shows that the decoder is strict: a
// misspelled field, a field at the wrong level and a duplicate field fail.
func TestStrictDecodingRejectsMistakes(t *testing.T) {
	good, err := os.ReadFile("kubernetes/base/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := manifest.DecodeStrict(good); err != nil {
		t.Fatalf("the unmodified Deployment must decode: %v", err)
	}
	for name, c := range map[string]struct{ old, new, want string }{
		"misspelled field":   {"  replicas: 2\n", "  replica: 2\n", `unknown field "spec.replica"`},
		"misspelled probe":   {"          livenessProbe:\n", "          livenessProbes:\n", `unknown field "spec.template.spec.containers[0].livenessProbes"`},
		"wrong level":        {"      terminationGracePeriodSeconds: 60\n", "      terminationGracePeriodSeconds: 60\n      maxUnavailable: 0\n", `unknown field "spec.template.spec.maxUnavailable"`},
		"duplicate field":    {"  replicas: 2\n", "  replicas: 2\n  replicas: 3\n", `replicas`},
		"wrong type":         {"  replicas: 2\n", "  replicas: two\n", `replicas`},
		"unknown kind":       {"kind: Deployment\n", "kind: Deploymnet\n", `Deploymnet`},
		"misspelled seccomp": {"            seccompProfile:\n              type: RuntimeDefault\n          volumeMounts:", "            seccompProfil:\n              type: RuntimeDefault\n          volumeMounts:", `seccompProfil`},
	} {
		t.Run(name, func(t *testing.T) {
			bad := strings.Replace(string(good), c.old, c.new, 1)
			if bad == string(good) {
				t.Fatalf("mutation %q not applied", c.old)
			}
			_, _, err := manifest.DecodeStrict([]byte(bad))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an error mentioning %q, got %v", c.want, err)
			}
		})
	}
}

// TestKustomizationsRender renders every kustomization with the kustomize Go
// library and checks the output: strict decoding (in render), then every rule
// of internal/policy on every workload and the objects in front of it.
func TestKustomizationsRender(t *testing.T) {
	backend := exampleBackendConfigMap(t)
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			for _, o := range objs {
				if ns := namespaceOf(o); o.GVK.Kind != "Namespace" && ns != "observability" {
					t.Errorf("%s is in namespace %q, want observability", o.Name(), ns)
				}
			}
			for _, ns := range manifest.Of[*corev1.Namespace](objs) {
				if ns.Labels["istio-injection"] != "disabled" || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
					t.Errorf("Namespace %s: want istio-injection=disabled and the restricted Pod Security Standard enforced, got %v", ns.Name, ns.Labels)
				}
			}
			if len(policy.Workloads(runtimeObjects(objs))) == 0 {
				t.Fatal("no workloads")
			}
			findings := checkObjects(t, objs, []*corev1.ConfigMap{backend}, func(w policy.Workload, cfg *collectorconfig.Config, receivers []collectorconfig.ReceiverPort) policy.Findings {
				hc, err := cfg.HealthCheck()
				if err != nil {
					t.Fatal(err)
				}
				var ports []int32
				for _, r := range receivers {
					ports = append(ports, r.Port)
				}
				var fs policy.Findings
				var svcs, pdbs, hpas, nps int
				for _, svc := range manifest.Of[*corev1.Service](objs) {
					if policy.Selects(svc.Spec.Selector, w) {
						svcs++
					}
				}
				for _, pdb := range manifest.Of[*policyv1.PodDisruptionBudget](objs) {
					if pdb.Name == w.Name {
						pdbs++
						fs = append(fs, policy.CheckPodDisruptionBudget(pdb, w, 2)...)
					}
				}
				for _, hpa := range manifest.Of[*autoscalingv2.HorizontalPodAutoscaler](objs) {
					if hpa.Name == w.Name {
						hpas++
						fs = append(fs, policy.CheckHorizontalPodAutoscaler(hpa, w)...)
					}
				}
				for _, np := range manifest.Of[*networkingv1.NetworkPolicy](objs) {
					if np.Name == w.Name {
						nps++
						fs = append(fs, policy.CheckNetworkPolicy(np, w, ports, hc.Port)...)
					}
				}
				if svcs == 0 || pdbs != 1 || hpas != 1 || nps != 1 {
					t.Errorf("%s: want a Service, one PodDisruptionBudget, HorizontalPodAutoscaler and NetworkPolicy named after it; got %d, %d, %d, %d",
						w.ID(), svcs, pdbs, hpas, nps)
				}
				return fs
			})
			for _, f := range findings {
				t.Error(f)
			}
		})
	}
}

// TestIstioSendsToTheServiceAndPortsAgree: the Service Istio sends to exposes
// the receivers' ports, the probes use the health_check port, and (in every
// overlay) otelcol-istio.observability is the Service name.
func TestServiceIsWhatIstioSendsTo(t *testing.T) {
	for _, dir := range kustomizations {
		objs := render(t, dir)
		var found bool
		for _, svc := range manifest.Of[*corev1.Service](objs) {
			if policy.DNSName(svc) == istioProviderService {
				found = true
				if svc.Spec.ClusterIP == corev1.ClusterIPNone {
					t.Errorf("%s: %s is headless", dir, istioProviderService)
				}
			}
		}
		if !found {
			t.Errorf("%s: no Service %s, which the Istio provider sends to", dir, istioProviderService)
		}
	}
}

// TestProductionMatchesBase: the production StatefulSet runs the base
// Deployment's pod template, except that the queue is a PersistentVolumeClaim.
func TestProductionMatchesBase(t *testing.T) {
	base := deployments(render(t, "kubernetes/base"))[0]
	sts := manifest.Of[*appsv1.StatefulSet](render(t, "kubernetes/overlays/production"))
	if len(sts) != 1 {
		t.Fatalf("want one StatefulSet in production, got %d", len(sts))
	}
	if len(deployments(render(t, "kubernetes/overlays/production"))) != 0 {
		t.Fatal("production still has the base Deployment")
	}
	want := base.Spec.Template.DeepCopy()
	var vols []corev1.Volume
	for _, v := range want.Spec.Volumes {
		if v.Name != "queue" {
			vols = append(vols, v)
		}
	}
	want.Spec.Volumes = vols
	if !equality.Semantic.DeepEqual(*want, sts[0].Spec.Template) {
		t.Errorf("production StatefulSet pod template drifted from the base Deployment's (other than the queue volume): compare kubernetes/overlays/production/statefulset.yaml with kubernetes/base/deployment.yaml")
	}
	var pvc bool
	for _, tpl := range sts[0].Spec.VolumeClaimTemplates {
		pvc = pvc || tpl.Name == "queue"
	}
	if !pvc {
		t.Error("production has no queue volumeClaimTemplate")
	}
	if *sts[0].Spec.Replicas < 3 {
		t.Errorf("production replicas %d, want at least 3", *sts[0].Spec.Replicas)
	}
}

func namespaceOf(o manifest.Object) string {
	type namespaced interface{ GetNamespace() string }
	if n, ok := o.Obj.(namespaced); ok {
		return n.GetNamespace()
	}
	return ""
}

// TestStatusIsNotPublic: /status (the mesh's services and delivery state) is
// read through kubectl port-forward or from the namespaces the operator
// labels, never from the whole cluster (deploy/README.md "Who can read
// /status"). health_check listens on all the pod's addresses, so
// port-forward, which connects to localhost inside the pod, reaches it; the
// NetworkPolicy admits 13133 only from status-reader namespaces; and the
// rule the policy used to have (13133 from anywhere) is caught.
func TestStatusIsNotPublic(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			var checked int
			fs := checkObjects(t, objs, []*corev1.ConfigMap{exampleBackendConfigMap(t)}, func(w policy.Workload, cfg *collectorconfig.Config, receivers []collectorconfig.ReceiverPort) policy.Findings {
				hc, err := cfg.HealthCheck()
				if err != nil {
					t.Fatal(err)
				}
				if host, _, err := net.SplitHostPort(hc.Endpoint); err != nil || host != "" {
					t.Errorf("%s: health_check listens on %q with the pod's environment; want all addresses (empty host), so that kubectl port-forward reaches it on loopback", w.ID(), hc.Endpoint)
				}
				var ports []int32
				for _, r := range receivers {
					ports = append(ports, r.Port)
				}
				var out policy.Findings
				for _, np := range manifest.Of[*networkingv1.NetworkPolicy](objs) {
					if np.Name == w.Name {
						checked++
						out = append(out, policy.CheckNetworkPolicy(np, w, ports, hc.Port)...)
					}
				}
				return out
			})
			for _, f := range fs {
				t.Error(f)
			}
			if checked == 0 {
				t.Error("no NetworkPolicy checked")
			}
		})
	}

	// The old rule put back: probes "kept working" by opening 13133 to all.
	np := string(readFile(t, "kubernetes/base/networkpolicy.yaml"))
	readers := "    - from:\n        - namespaceSelector:\n            matchLabels:\n              " + policy.StatusReaderLabel + ": \"true\"\n      ports:\n        - port: 13133\n"
	if !strings.Contains(np, readers) {
		t.Fatalf("base NetworkPolicy has no status-reader rule of the expected shape:\n%s", np)
	}
	objs := renderBaseWith(t, map[string]string{"networkpolicy.yaml": strings.Replace(np, readers, "    - ports:\n        - port: 13133\n", 1)})
	w := policy.Workloads(runtimeObjects(objs))[0]
	fs := policy.CheckNetworkPolicy(manifest.Of[*networkingv1.NetworkPolicy](objs)[0], w, []int32{4317, 4318}, 13133)
	if !fs.Has("netpol.health-public") || !fs.Has("netpol.health-readers") {
		t.Errorf("13133 from anywhere not caught: %v", fs)
	}
}

// renderBaseWith renders a copy of the base with some files replaced.
func renderBaseWith(t *testing.T, files map[string]string) []manifest.Object {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir("kubernetes/base")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data := readFile(t, "kubernetes/base/"+e.Name())
		if s, ok := files[e.Name()]; ok {
			data = []byte(s)
		}
		if writeErr := os.WriteFile(dir+"/"+e.Name(), data, 0o600); writeErr != nil {
			t.Fatal(writeErr)
		}
	}
	objs, err := manifest.RenderAndDecode(dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
