package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// fileStorageQueue is the shipped config as it was before queue_storage:
// the sending queue on contrib's file_storage in the same directory.
const fileStorageQueue = `
extensions:
  file_storage/queue:
    directory: ${env:OTLP_BACKEND_QUEUE_DIR}
    create_directory: true
    fsync: true
exporters:
  otlp_grpc:
    sending_queue:
      storage: file_storage/queue
service:
  extensions: [health_check, otlp_guard, backend_auth, file_storage/queue]
`

// Upgrading from a build that kept the queue in file_storage loses nothing:
// spans accepted into file_storage's queue while the backend was down are
// delivered by the shipped config (queue_storage) started on the same
// directory, which imports that queue and removes its file.
func TestUpgradeFromFileStorageQueue(t *testing.T) {
	backend := harness.StartBackend(t)
	backend.Stop()
	queueDir := t.TempDir()
	env := shippedEnv(backend, "grpc", queueDir)
	old := startShipped(t, "grpc", env, writeConfig(t, fileStorageQueue))
	st := newSpanTracker()
	for range 20 {
		ids := st.nextIDs(100)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := harness.SendGRPC(ctx, old.GRPCEndpoint, bigRequest(ids, 200))
		cancel()
		st.done(ids, err)
	}
	old.Stop()
	boltFile := filepath.Join(queueDir, "exporter_otlp_grpc__traces")
	if _, err := os.Stat(boltFile); err != nil {
		t.Fatalf("file_storage kept no queue file: %v", err)
	}

	if err := backend.Start(); err != nil {
		t.Fatal(err)
	}
	col := startShipped(t, "grpc", env)
	accepted, delivered, lost := st.waitDelivered(backend, 30*time.Second)
	t.Logf("queued in file_storage: %d spans accepted (%d refused); after the upgrade: %d delivered, %d lost",
		accepted, st.refused, delivered, lost)
	if accepted < 1000 {
		t.Fatalf("only %d spans accepted before the upgrade", accepted)
	}
	if lost != 0 {
		t.Errorf("%d spans queued in file_storage were lost in the upgrade", lost)
	}
	if _, err := os.Stat(boltFile); !os.IsNotExist(err) {
		t.Errorf("file_storage's queue file is still there after the import (stat: %v)", err)
	}
	if !strings.Contains(col.Logs(), "Imported the file_storage queue into the queue journal") {
		t.Errorf("the import was not logged:\n%s", col.Logs())
	}
}
