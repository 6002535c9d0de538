package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/manifest"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/policy"
)

// configCopies maps each collector config in a kustomization to the
// distribution config it copies (kustomize cannot read outside its root).
var configCopies = map[string]string{
	"kubernetes/base/config.yaml":          "distribution/config.yaml",
	"kubernetes/overlays/http/config.yaml": "distribution/config-http.yaml",
}

// TestConfigCopiesMatchDistribution: the ConfigMaps carry exactly the configs
// the distribution ships. `make deploy-config` refreshes the copies.
func TestConfigCopiesMatchDistribution(t *testing.T) {
	for copyPath, src := range configCopies {
		want := readFile(t, filepath.Join(repoRoot, src))
		if got := readFile(t, copyPath); !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s: run `make deploy-config`", copyPath, src)
		}
	}
}

// TestConfigMapsPassValidate runs `otelcol-istio validate` on the collector
// config each kustomization puts in its ConfigMap, with the environment the
// pod gives it (the example backend ConfigMap, a token file, the pod IP).
func TestConfigMapsPassValidate(t *testing.T) {
	bin := collectorBinary(t)
	backend := exampleBackendConfigMap(t)
	for _, dir := range kustomizations {
		objs := render(t, dir)
		cms := append(manifest.Of[*corev1.ConfigMap](objs), backend)
		for _, w := range policy.Workloads(runtimeObjects(objs)) {
			if !strings.HasPrefix(w.Container().Image, "ghcr.io/otelcol-istio/") {
				continue // the loadbalancing tier runs upstream contrib (TestLoadbalancingTier)
			}
			name, _, text, err := w.CollectorConfig(cms)
			if err != nil {
				t.Fatal(err)
			}
			env := w.Env(cms)
			if strings.HasSuffix(dir, "overlays/http") {
				// The example ConfigMap's endpoint is gRPC's host:port; its
				// comment says OTLP/HTTP takes https://host[:port].
				env["OTLP_BACKEND_ENDPOINT"] = "https://otlp.backend.example.com"
			}
			t.Run(dir+"/"+name, func(t *testing.T) {
				if err := validate(t, bin, text, env); err != nil {
					t.Fatal(err)
				}
				// And validate really validates: a pipeline naming an undefined
				// processor fails.
				broken := strings.Replace(text, "\n  memory_limiter:", "\n  memory_limiterr:", 1)
				if broken == text {
					t.Fatal("mutation not applied: no memory_limiter processor defined?")
				}
				if err := validate(t, bin, broken, env); err == nil {
					t.Fatal("validate accepted a pipeline naming an undefined processor")
				}
			})
		}
	}
}

func validate(t *testing.T, bin, text string, podEnv map[string]string) error {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte("validate-only-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for k, v := range podEnv {
		switch k {
		case "MY_POD_IP":
			v = "127.0.0.1"
		case "OTLP_BACKEND_TOKEN_FILE":
			v = token
		case "OTLP_BACKEND_QUEUE_DIR":
			v = filepath.Join(dir, "queue")
		}
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(bin, "validate", "--config="+cfg)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return &validateError{err: err, out: string(out)}
	}
	return nil
}

type validateError struct {
	err error
	out string
}

func (e *validateError) Error() string { return "validate: " + e.err.Error() + "\n" + e.out }
