package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// mountSmallVolume mounts a tmpfs of size at a new directory and returns
// it; the test skips, saying why, when it cannot (not root, no mount).
func mountSmallVolume(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs for a small queue volume needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// Issue 25 contract 1, the reported scenario: the queue's volume is 24 MiB,
// the backend is down, 3,000 requests of 10 spans of about 1 KB go in. New
// spans are refused (retryable) once the volume is short of room, long
// before the queue's reads and deletes run out of it; when the backend is
// back, every accepted span is delivered; new spans are accepted after the
// drain, and the process stays up.
func TestQueueOnAFullDiskDrains(t *testing.T) {
	queueDir := mountSmallVolume(t, "24m")
	backend := harness.StartBackend(t)
	backend.Stop()
	// The disk, not the queue's capacity, is the limit.
	override := writeConfig(t, `
exporters:
  otlp_grpc:
    sending_queue:
      queue_size: 268435456
`)
	col := startShipped(t, "grpc", shippedEnv(backend, "grpc", queueDir), override)
	st := newSpanTracker()
	send := func(n int) {
		for range n {
			ids := st.nextIDs(10)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := harness.SendGRPC(ctx, col.GRPCEndpoint, bigRequest(ids, 1000))
			cancel()
			st.done(ids, err)
		}
	}
	send(3000)
	accepted, _, _ := st.count(backend)
	t.Logf("backend down, 24 MiB volume: %d spans accepted, %d refused (%v)", accepted, st.refused, st.codes)
	if st.refused == 0 {
		t.Fatal("the volume never filled: the test would prove nothing")
	}
	for msg := range st.codes {
		if !strings.Contains(msg, "code = Unavailable") || !strings.Contains(msg, "queue volume full") {
			t.Errorf("sender was told %q, want a retryable Unavailable: queue volume full", msg)
		}
	}

	if err := backend.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, delivered, lost := st.waitDelivered(backend, 180*time.Second)
	t.Logf("backend back: %d of %d accepted spans delivered in %s", delivered, accepted, time.Since(start).Round(time.Second))
	if lost != 0 {
		t.Errorf("%d accepted spans not delivered after 180 s\n%s", lost, tail(col.Logs(), 3000))
	}
	if col.Exited() {
		t.Fatal("the collector exited")
	}

	// After the drain the volume takes new spans again.
	refusedBefore := st.refused
	send(100)
	if st.refused != refusedBefore {
		t.Errorf("%d of 1,000 new spans refused after the drain (%v)", st.refused-refusedBefore, st.codes)
	}
	if _, _, lost = st.waitDelivered(backend, 60*time.Second); lost != 0 {
		t.Errorf("%d spans not delivered after the drain", lost)
	}
	if strings.Contains(col.Logs(), "Failed updating currently dispatched items") || strings.Contains(col.Logs(), "Error deleting item from queue") {
		t.Errorf("the queue could not record its reads or deletes:\n%s", tail(col.Logs(), 3000))
	}
}
