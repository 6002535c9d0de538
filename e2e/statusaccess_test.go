package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// Issue 13 item 8: /status through kubectl port-forward. The runtime
// (containerd, CRI-O) connects to localhost:<port> inside the pod's network
// namespace, so health_check must listen on loopback as well as on the pod
// IP the kubelet probes. The Deployment sets HEALTH_CHECK_HOST to "" for
// that; without it health_check stays on MY_POD_IP alone. The shipped
// endpoint expression runs here unchanged, on a free port instead of 13133.
func TestHealthCheckHostForPortForward(t *testing.T) {
	raw, err := os.ReadFile(shippedConfig("grpc"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ {2}health_check:\n {4}endpoint: "(.*):\$\{env:HEALTH_CHECK_PORT:-13133\}"$`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("no health_check endpoint on 13133 in the shipped config")
	}
	hostExpr := string(m[1])
	podIP := fmt.Sprintf("127.0.0.%d", 2+time.Now().UnixNano()%250)

	for _, c := range []struct {
		name          string
		env           map[string]string
		loopback, pod bool
	}{
		{"as the Deployment: HEALTH_CHECK_HOST empty", map[string]string{"HEALTH_CHECK_HOST": ""}, true, true},
		{"HEALTH_CHECK_HOST unset", map[string]string{}, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			port := harness.FreePort(t)
			override := writeConfig(t, fmt.Sprintf(`
extensions:
  health_check:
    endpoint: "%s:%s"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%s
      http:
        endpoint: 127.0.0.1:%s
service:
  telemetry:
    metrics:
      readers:
        - pull: {exporter: {prometheus: {host: 127.0.0.1, port: %s}}}
`, hostExpr, port, harness.FreePort(t), harness.FreePort(t), harness.FreePort(t)))
			backend := harness.StartBackend(t)
			env := shippedEnv(backend, "grpc", t.TempDir())
			env["MY_POD_IP"] = podIP
			for k, v := range c.env {
				env[k] = v
			}
			cmd := exec.Command(harness.Binary(t), "--config", shippedConfig("grpc"), "--config", override)
			cmd.Env = filterEnv(os.Environ(), env)
			if _, set := c.env["HEALTH_CHECK_HOST"]; !set {
				cmd.Env = dropEnv(cmd.Env, "HEALTH_CHECK_HOST")
			}
			var logs harness.SyncBuffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(exited) }()
			t.Cleanup(func() {
				_ = cmd.Process.Signal(os.Interrupt)
				<-exited
			})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := harness.PollHealthy(ctx, net.JoinHostPort(podIP, port), exited); err != nil {
				t.Fatalf("no health_check on the pod IP %s: %v\n%s", podIP, err, logs.String())
			}
			for addr, want := range map[string]bool{
				net.JoinHostPort("127.0.0.1", port): c.loopback, // kubectl port-forward
				net.JoinHostPort(podIP, port):       c.pod,      // kubelet probes, status readers
			} {
				got := statusAnswers(addr)
				if got != want {
					t.Errorf("/status on %s answers: %t, want %t", addr, got, want)
				}
			}
		})
	}
}

// statusAnswers: GET /status on addr answers 200.
func statusAnswers(addr string) bool {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/status")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// dropEnv removes name from env.
func dropEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if len(kv) > len(name) && kv[:len(name)+1] == name+"=" {
			continue
		}
		out = append(out, kv)
	}
	return out
}
