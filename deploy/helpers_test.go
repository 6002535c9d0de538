package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/manifest"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/policy"
)

// repoRoot is the repository root, seen from this module's directory.
const repoRoot = ".."

// kustomizations are every kustomization we ship; each one must render and
// pass every check.
var kustomizations = []string{
	"kubernetes/base",
	"kubernetes/overlays/http",
	"kubernetes/overlays/production",
	"kubernetes/overlays/loadbalancing",
}

var (
	renderMu    sync.Mutex
	renderCache = map[string][]manifest.Object{}
)

// render renders a kustomization once per test binary and decodes it strictly.
func render(t *testing.T, dir string) []manifest.Object {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if objs, ok := renderCache[dir]; ok {
		return objs
	}
	objs, err := manifest.RenderAndDecode(dir)
	if err != nil {
		t.Fatalf("render %s: %v", dir, err)
	}
	renderCache[dir] = objs
	return objs
}

func runtimeObjects(objs []manifest.Object) []runtime.Object {
	out := make([]runtime.Object, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.Obj)
	}
	return out
}

// exampleBackendConfigMap is the ConfigMap users create from
// examples/backend-configmap.yaml; the workloads take their env from it.
func exampleBackendConfigMap(t *testing.T) *corev1.ConfigMap {
	t.Helper()
	objs, err := manifest.DecodeFile("kubernetes/examples/backend-configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cms := manifest.Of[*corev1.ConfigMap](objs)
	if len(cms) != 1 {
		t.Fatalf("examples/backend-configmap.yaml: want 1 ConfigMap, got %d", len(cms))
	}
	return cms[0]
}

// collectorWorkload returns the one workload running our image in a render.
func collectorWorkload(t *testing.T, objs []manifest.Object) policy.Workload {
	t.Helper()
	var found []policy.Workload
	for _, w := range policy.Workloads(runtimeObjects(objs)) {
		if w.Template.Labels["app.kubernetes.io/component"] == "collector" {
			found = append(found, w)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one collector workload, got %d", len(found))
	}
	return found[0]
}

func deployments(objs []manifest.Object) []*appsv1.Deployment {
	return manifest.Of[*appsv1.Deployment](objs)
}

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// collectorBinary returns bin/otelcol-istio, built with `make build` (which
// rebuilds only when a source changed) unless OTELCOL_ISTIO_BINARY names one.
func collectorBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		if p := os.Getenv("OTELCOL_ISTIO_BINARY"); p != "" {
			binaryPath = p
			return
		}
		cmd := exec.Command("make", "--no-print-directory", "build")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			binaryErr = err
			binaryPath = string(out)
			return
		}
		binaryPath, binaryErr = filepath.Abs(filepath.Join(repoRoot, "bin", "otelcol-istio"))
	})
	if binaryErr != nil {
		t.Fatalf("make build: %v\n%s", binaryErr, binaryPath)
	}
	return binaryPath
}
