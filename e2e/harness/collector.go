package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BinaryEnv names the variable that points the harness at a prebuilt binary.
// Without it the harness runs `make build`, which rebuilds only when a source
// changed.
const BinaryEnv = "OTELCOL_ISTIO_BINARY"

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary returns the path of a fresh otelcol-istio binary, building it once
// per test process if needed.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv(BinaryEnv); p != "" {
			buildPath = p
			return
		}
		cmd := exec.Command("make", "--no-print-directory", "build")
		cmd.Dir = RepoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("make build: %w\n%s", err, out)
			return
		}
		buildPath = filepath.Join(RepoRoot(), "bin", "otelcol-istio")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// RunBinary runs the binary to completion (e.g. `validate --config ...`) and
// returns its combined output.
func RunBinary(t testing.TB, env map[string]string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = mergeEnv(env)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// CollectorOptions says how to start a collector.
type CollectorOptions struct {
	// Configs are passed as --config, in order (later ones merge over earlier).
	Configs []string
	// Env adds or overrides environment variables.
	Env map[string]string
	// PortsByEnv moves the listeners of a shipped config with its own
	// variables (MY_POD_IP=127.0.0.1 and free OTLP_GRPC_PORT, OTLP_HTTP_PORT,
	// HEALTH_CHECK_PORT, METRICS_PORT) instead of merging a config over it.
	PortsByEnv bool
}

// Collector is a running otelcol-istio process.
type Collector struct {
	t    testing.TB
	cmd  *exec.Cmd
	logs *SyncBuffer
	done chan struct{}
	err  error

	// GRPCEndpoint and HTTPEndpoint are the OTLP receiver's host:port.
	GRPCEndpoint, HTTPEndpoint string
	// HealthEndpoint is the health_check extension's host:port.
	HealthEndpoint string
	// MetricsEndpoint is the internal telemetry's Prometheus host:port.
	MetricsEndpoint string
}

// StartCollector starts the binary with the given configs on free ports and
// waits until the health endpoint answers 200. The receiver must be named
// `otlp` and the extension `health_check`, as in every config we ship.
func StartCollector(t testing.TB, opts CollectorOptions) *Collector {
	t.Helper()
	c := &Collector{t: t, logs: &SyncBuffer{}, done: make(chan struct{})}
	args := []string{}
	for _, cfg := range opts.Configs {
		args = append(args, "--config", cfg)
	}
	env := map[string]string{}
	if opts.PortsByEnv {
		ports := map[string]string{}
		for _, name := range []string{"OTLP_GRPC_PORT", "OTLP_HTTP_PORT", "HEALTH_CHECK_PORT", "METRICS_PORT"} {
			ports[name] = FreePort(t)
			env[name] = ports[name]
		}
		env["MY_POD_IP"] = "127.0.0.1"
		c.GRPCEndpoint, c.HTTPEndpoint = "127.0.0.1:"+ports["OTLP_GRPC_PORT"], "127.0.0.1:"+ports["OTLP_HTTP_PORT"]
		c.HealthEndpoint, c.MetricsEndpoint = "127.0.0.1:"+ports["HEALTH_CHECK_PORT"], "127.0.0.1:"+ports["METRICS_PORT"]
	} else {
		override, ep := PortsOverride(t)
		c.GRPCEndpoint, c.HTTPEndpoint, c.HealthEndpoint, c.MetricsEndpoint = ep.GRPC, ep.HTTP, ep.Health, ep.Metrics
		args = append(args, "--config", override)
	}
	for k, v := range opts.Env {
		env[k] = v
	}
	c.cmd = exec.Command(Binary(t), args...)
	c.cmd.Env = mergeEnv(env)
	c.cmd.Stdout = c.logs
	c.cmd.Stderr = c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("collector logs:\n%s", c.Logs())
		}
	})
	c.WaitHealthy(30 * time.Second)
	return c
}

// Endpoints are where PortsOverride moves a collector's listeners, each
// host:port.
type Endpoints struct {
	GRPC, HTTP, Health, Metrics string
}

// PortsOverride writes a config to merge over a test's configs: the otlp
// receiver, health_check and the internal metrics reader move to free
// 127.0.0.1 ports, so parallel tests and a developer's own collector never
// collide. It returns the file and the endpoints.
func PortsOverride(t testing.TB) (string, Endpoints) {
	t.Helper()
	ep := Endpoints{
		GRPC:    "127.0.0.1:" + FreePort(t),
		HTTP:    "127.0.0.1:" + FreePort(t),
		Health:  "127.0.0.1:" + FreePort(t),
		Metrics: "127.0.0.1:" + FreePort(t),
	}
	_, metricsPort, _ := net.SplitHostPort(ep.Metrics)
	path := filepath.Join(t.TempDir(), "ports.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(portsOverride, ep.GRPC, ep.HTTP, ep.Health, metricsPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, ep
}

const portsOverride = `
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
extensions:
  health_check:
    endpoint: %s
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %s
`

// WaitHealthy waits until GET / on the health endpoint answers 200.
func (c *Collector) WaitHealthy(timeout time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	switch err := PollHealthy(ctx, c.HealthEndpoint, c.done); {
	case errors.Is(err, ErrExited):
		c.t.Fatalf("collector exited before becoming healthy: %v\n%s", c.err, c.Logs())
	case err != nil:
		c.t.Fatalf("collector not healthy after %s\n%s", timeout, c.Logs())
	}
}

// ErrExited is PollHealthy's error when the process ended first.
var ErrExited = errors.New("process exited before it was healthy")

// PollHealthy polls GET / on the health_check endpoint addr every 100 ms
// until it answers 200 (nil), the process ends (exited is closed:
// ErrExited), or ctx ends (its error). health_check answers 200 only once
// every component, the receivers included, has started.
func PollHealthy(ctx context.Context, addr string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			return ErrExited
		default:
		}
		if resp, err := client.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return ErrExited
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Logs returns everything the collector wrote to stdout and stderr so far.
func (c *Collector) Logs() string { return c.logs.String() }

// PID is the collector's process id (the harness runs the binary itself).
func (c *Collector) PID() int { return c.cmd.Process.Pid }

// Signal sends sig to the collector process.
func (c *Collector) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// Wait waits for the process to exit and returns its error (nil on exit 0).
func (c *Collector) Wait(timeout time.Duration) error {
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		return fmt.Errorf("collector still running after %s", timeout)
	}
}

// Exited says whether the process has ended.
func (c *Collector) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits for a graceful exit, killing the process if it
// does not exit within 30 seconds.
func (c *Collector) Stop() {
	if c.Exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	if err := c.Wait(30 * time.Second); err != nil && !c.Exited() {
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// Kill ends the process with SIGKILL, as a crash or an OOM kill would.
func (c *Collector) Kill() {
	if c.Exited() {
		return
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

var (
	portsMu     sync.Mutex
	portsHanded = map[string]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no other caller in this process has been given, so parallel tests
// never pick the same port before either binds it.
func FreePort(t testing.TB) string {
	t.Helper()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// FreeAddr is FreePort as 127.0.0.1:port, with an error instead of a
// failed test, for programs (the benchmark) that start collectors too.
func FreeAddr() (string, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := l.Addr().String()
		l.Close()
		if !portsHanded[addr] {
			portsHanded[addr] = true
			return addr, nil
		}
	}
	return "", errors.New("no free port found")
}

func mergeEnv(extra map[string]string) []string {
	env := os.Environ()
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// SyncBuffer collects a process's output: a bytes.Buffer safe for its two
// output streams and a test polling it at once. With Limit > 0 it keeps
// only the first Limit bytes (a long benchmark's flood of warnings is not
// useful, and would hold memory).
type SyncBuffer struct {
	Limit int

	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Limit > 0 && s.buf.Len() >= s.Limit {
		return len(p), nil
	}
	return s.buf.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// WaitForLog waits until the collector's output contains substr.
func (c *Collector) WaitForLog(substr string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(c.Logs(), substr) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("collector output has no %q after %s\n%s", substr, timeout, c.Logs())
}

// TelemetrygenEnv names the variable that points at the pinned telemetrygen.
const TelemetrygenEnv = "TELEMETRYGEN"

// Telemetrygen returns the path of the pinned telemetrygen, installing it
// with `make tools` when the Makefile did not pass it in.
func Telemetrygen(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(TelemetrygenEnv); p != "" {
		return p
	}
	cmd := exec.Command("make", "--no-print-directory", "tools")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make tools: %v\n%s", err, out)
	}
	matches, _ := filepath.Glob(filepath.Join(RepoRoot(), ".tools", "telemetrygen-*"))
	if len(matches) != 1 {
		t.Fatalf("want one telemetrygen in .tools, found %v", matches)
	}
	return matches[0]
}
