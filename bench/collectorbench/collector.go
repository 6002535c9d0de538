package collectorbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// Pipeline says which processors the collector under test runs.
type Pipeline string

const (
	// Full is our pipeline: memory_limiter, istio_span, group_commit.
	Full Pipeline = "full"
	// Baseline is the same without istio_span.
	Baseline Pipeline = "baseline"
)

// configTemplate is the collector under test, shaped like the shipped
// distribution/config.yaml: the OTLP receiver,
// memory_limiter, istio_span (baseline: without it), group_commit, and the otlp_grpc
// exporter with gzip and batching in its sending queue, to the sink. Left
// out: the backend auth extension (the sink needs none) and, unless
// Queue is "journal" or "file", the persistent queue on queue_storage or on file_storage. Unless AsShipped,
// otlp_guard and the internal metrics are left out too, as they would only add their own cost.
const configTemplate = `
extensions:
  health_check:
    endpoint: %[1]s
  file_storage/queue:
    directory: %[6]s
    create_directory: true
    fsync: true
  queue_storage:
    directory: %[6]s-journal
    create_directory: true
    fsync: true
  otlp_guard:
    max_value_depth: 32
    max_spans_per_request: 16384
    max_items_per_request: 262144
    max_export_request_bytes: 4194304
    max_in_flight_bytes: 134217728
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %[2]s
        max_recv_msg_size_mib: 4%[9]s
      http:
        endpoint: %[3]s
        max_request_body_size: 4194304%[9]s
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 400
    spike_limit_mib: 100
  istio_span:
    service_name:
      format: CANONICAL_NAME_AND_NAMESPACE
      semconv_attributes: true
  group_commit:
exporters:
  otlp_grpc:
    endpoint: %[4]s
    compression: %[8]s
    tls:
      insecure: true
    timeout: 10s
    retry_on_failure:
      enabled: true
      max_elapsed_time: 0s
    sending_queue:
      enabled: true
      %[7]s
      sizer: bytes
      queue_size: 536870912
      num_consumers: 4
      batch:
        flush_timeout: 200ms
        sizer: bytes
        min_size: 524288
        max_size: 4194304
service:
  extensions: [health_check, file_storage/queue, queue_storage%[10]s]
  telemetry:
    logs:
      level: warn
    metrics:%[11]s
  pipelines:
    traces:
      receivers: [otlp]
      processors: [%[5]s]
      exporters: [otlp_grpc]
`

// Collector is a collector process under test.
type Collector struct {
	GRPC, HTTP string
	health     string
	cmd        *exec.Cmd
	logs       *harness.SyncBuffer
	done       chan struct{}
	err        error
}

// CollectorOptions pin the process to CPUs.
type CollectorOptions struct {
	Binary string
	// CPUs, if set, runs the process under `taskset -c CPUs`.
	CPUs string
	// GOMAXPROCS, if > 0, is set in its environment.
	GOMAXPROCS int
	Dir        string
	SinkAddr   string
	// Queue is "memory" (default), "journal" (the shipped config's
	// persistent queue on queue_storage, fsync) or "file" (on contrib's
	// file_storage, fsync, as shipped before queue_storage).
	Queue string
	// Compression is the exporter's: gzip (shipped), zstd, snappy or none.
	Compression string
	// NoGroupCommit leaves group_commit out of the pipeline (to show what it
	// does for the persistent queue).
	NoGroupCommit bool
	// Name names the config and queue directory in Dir (default: the pipeline).
	Name string
	// AsShipped adds what the shipped config has beyond the pipeline:
	// otlp_guard on both receivers, and the internal metrics at their
	// default level on a Prometheus endpoint (a free port).
	AsShipped bool
}

// StartCollector starts the binary with the pipeline on free ports and waits
// until it is healthy.
func StartCollector(ctx context.Context, p Pipeline, o CollectorOptions) (*Collector, error) {
	ports := make([]string, 3)
	for i := range ports {
		addr, err := harness.FreeAddr()
		if err != nil {
			return nil, err
		}
		ports[i] = addr
	}
	procs := "memory_limiter, istio_span, group_commit"
	if p == Baseline {
		procs = "memory_limiter, group_commit"
	}
	if o.NoGroupCommit {
		procs = strings.TrimSuffix(procs, ", group_commit")
	}
	name := o.Name
	if name == "" {
		name = string(p)
	}
	storage := "# in-memory queue"
	switch o.Queue {
	case "file":
		storage = "storage: file_storage/queue"
	case "journal":
		storage = "storage: queue_storage"
	}
	queueDir := filepath.Join(o.Dir, name+"-queue")
	cfg := filepath.Join(o.Dir, name+".yaml")
	guard, guardExt, metrics := "", "", "\n      level: none"
	if o.AsShipped {
		guard, guardExt = "\n        middlewares:\n          - id: otlp_guard", ", otlp_guard"
		addr, err := harness.FreeAddr()
		if err != nil {
			return nil, err
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		metrics = fmt.Sprintf(`
      readers:
        - pull:
            exporter:
              prometheus:
                host: %q
                port: %s
                without_scope_info: true
                without_units: true
                without_type_suffix: true`, host, port)
	}
	if err := os.WriteFile(cfg, fmt.Appendf(nil, configTemplate, ports[0], ports[1], ports[2], o.SinkAddr, procs, queueDir, storage, o.Compression,
		guard, guardExt, metrics), 0o600); err != nil {
		return nil, err
	}
	args := []string{o.Binary, "--config", cfg}
	if o.CPUs != "" {
		args = append([]string{"taskset", "-c", o.CPUs}, args...)
	}
	c := &Collector{GRPC: ports[1], HTTP: ports[2], health: ports[0], logs: &harness.SyncBuffer{Limit: 1 << 20}, done: make(chan struct{})}
	c.cmd = exec.Command(args[0], args[1:]...)
	c.cmd.Env = os.Environ()
	if o.GOMAXPROCS > 0 {
		c.cmd.Env = append(c.cmd.Env, "GOMAXPROCS="+strconv.Itoa(o.GOMAXPROCS))
	}
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch err := harness.PollHealthy(ctx, c.health, c.done); {
	case errors.Is(err, harness.ErrExited):
		return nil, fmt.Errorf("%s collector exited: %w\n%s", p, c.err, c.logs.String())
	case err != nil:
		c.Stop()
		return nil, fmt.Errorf("%s collector not healthy after 30s\n%s", p, c.logs.String())
	}
	return c, nil
}

// Endpoint is the receiver's host:port for a protocol.
func (c *Collector) Endpoint(protocol string) string {
	if protocol == "http" {
		return c.HTTP
	}
	return c.GRPC
}

// Stop ends the process with SIGTERM (SIGKILL after 20s).
func (c *Collector) Stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// Logs is what the process printed.
func (c *Collector) Logs() string { return c.logs.String() }

// CPUSeconds is the process's user+system CPU time so far (utime and stime,
// fields 14 and 15 of /proc/<pid>/stat, in USER_HZ ticks of 1/100 s).
func (c *Collector) CPUSeconds() (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.pid()))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields restart after ')'.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (ut + st) / 100, nil
}

// PeakRSS is VmHWM from /proc/<pid>/status, in bytes.
func (c *Collector) PeakRSS() (int64, error) { return c.status("VmHWM:") }

// WriteBytes is what the process has sent to the storage layer so far
// (write_bytes of /proc/<pid>/io): the queue's disk writes.
func (c *Collector) WriteBytes() (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", c.pid()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "write_bytes:"); ok {
			return strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		}
	}
	return 0, errors.New("no write_bytes in /proc io")
}

func (c *Collector) status(key string) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.pid()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("%s not in /proc status", key)
}

// pid is the collector's own pid: taskset execs it, so it is the child's.
func (c *Collector) pid() int { return c.cmd.Process.Pid }
