package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/policy"
)

var (
	deployPath = regexp.MustCompile(`deploy/[A-Za-z0-9_./-]*[A-Za-z0-9_/-]`)
	makeTarget = regexp.MustCompile("(?m)(?:^|`)make ([a-z][a-z-]*)")
	applyK     = regexp.MustCompile(`apply -k (\S+)`)
)

// TestREADMECommandsMatchFiles: every deploy/... path and make target the
// READMEs mention exists, and every `kubectl apply -k` names a kustomization.
func TestREADMECommandsMatchFiles(t *testing.T) {
	makefile := string(readFile(t, filepath.Join(repoRoot, "Makefile")))
	for _, readme := range []string{"README.md", "istio/README.md"} {
		text := string(readFile(t, readme))
		n := 0
		for _, p := range deployPath.FindAllString(text, -1) {
			n++
			if _, err := os.Stat(filepath.Join(repoRoot, p)); err != nil {
				t.Errorf("%s mentions %s, which does not exist", readme, p)
			}
		}
		if n < 5 {
			t.Errorf("%s: only %d deploy/ paths found; is the pattern still right?", readme, n)
		}
		for _, m := range makeTarget.FindAllStringSubmatch(text, -1) {
			if !strings.Contains(makefile, "\n"+m[1]+":") {
				t.Errorf("%s mentions `make %s`, which the Makefile does not have", readme, m[1])
			}
		}
		for _, m := range applyK.FindAllStringSubmatch(text, -1) {
			if _, err := os.Stat(filepath.Join(repoRoot, m[1], "kustomization.yaml")); err != nil {
				t.Errorf("%s: `kubectl apply -k %s` names no kustomization", readme, m[1])
			}
		}
	}
}

// rolloutStatus matches `kubectl ... rollout status deployment/NAME`.
var rolloutStatus = regexp.MustCompile(`rollout status deployment/(\S+)`)

// Issue 29 item 3: the README's steps for the loadbalancing overlay wait for
// the second tier before the first, and name Deployments the overlay has.
func TestREADMELoadbalancingRolloutOrder(t *testing.T) {
	text := string(readFile(t, "README.md"))
	const apply = "kubectl apply -k deploy/kubernetes/overlays/loadbalancing"
	i := strings.Index(text, apply)
	if i < 0 {
		t.Fatalf("README.md has no %q", apply)
	}
	block, _, found := strings.Cut(text[i:], "```")
	if !found {
		t.Fatal("the code block with the apply command does not end")
	}
	var order []string
	for _, m := range rolloutStatus.FindAllStringSubmatch(block, -1) {
		order = append(order, m[1])
	}
	objs := render(t, "kubernetes/overlays/loadbalancing")
	roles := map[string]string{}
	for _, w := range policy.Workloads(runtimeObjects(objs)) {
		if w.Deployment != nil {
			roles[w.Deployment.Name] = w.Template.Labels["app.kubernetes.io/component"]
		}
	}
	var got []string
	for _, name := range order {
		role, ok := roles[name]
		if !ok {
			t.Errorf("README waits for deployment/%s, which the overlay does not have (it has %v)", name, roles)
		}
		got = append(got, role)
	}
	if !slices.Equal(got, []string{"collector", "loadbalancer"}) {
		t.Errorf("README waits for %v (%v): want the second tier (collector) first, then the first tier (loadbalancer)", order, got)
	}
}
