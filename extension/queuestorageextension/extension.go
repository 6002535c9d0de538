package queuestorageextension // import "github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension"

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension/internal/journal"
	"github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension/internal/metadata"
)

type queueStorage struct {
	cfg    *Config
	logger *zap.Logger
	tel    *metadata.TelemetryBuilder
	host   component.Host

	mu      sync.Mutex
	clients map[*client]struct{}
	// status is the last componentstatus reported: nil OK, else the cause;
	// unhealthy mirrors status != nil, so that a healthy write skips the check.
	status    error
	unhealthy atomic.Bool
}

var _ storage.Extension = (*queueStorage)(nil)

func newQueueStorage(cfg *Config, set component.TelemetrySettings) (*queueStorage, error) {
	q := &queueStorage{cfg: cfg, logger: set.Logger, clients: map[*client]struct{}{}}
	tel, err := newTelemetry(set, q)
	if err != nil {
		return nil, fmt.Errorf("queue_storage: telemetry: %w", err)
	}
	q.tel = tel
	return q, nil
}

func (q *queueStorage) openClients() []*client {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]*client, 0, len(q.clients))
	for c := range q.clients {
		out = append(out, c)
	}
	return out
}

// checkHealth reports a RecoverableError while any journal refuses new
// items for space or its last fdatasync failed, and OK once none does; only
// changes are reported.
func (q *queueStorage) checkHealth() {
	var cause error
	for _, c := range q.openClients() {
		full, syncErr := c.j.Health()
		switch {
		case syncErr != nil:
			cause = fmt.Errorf("queue journal %s: fsync failed: %w", c.name, syncErr)
		case full && cause == nil:
			cause = fmt.Errorf("queue journal %s: %w", c.name, journal.ErrDiskFull)
		}
	}
	q.mu.Lock()
	changed := (cause == nil) != (q.status == nil) || (cause != nil && cause.Error() != q.status.Error())
	q.status = cause
	q.unhealthy.Store(cause != nil)
	host := q.host
	q.mu.Unlock()
	if !changed || host == nil {
		return
	}
	if cause != nil {
		componentstatus.ReportStatus(host, componentstatus.NewRecoverableErrorEvent(cause))
	} else {
		componentstatus.ReportStatus(host, componentstatus.NewEvent(componentstatus.StatusOK))
	}
}

func (q *queueStorage) Start(_ context.Context, host component.Host) error {
	q.mu.Lock()
	q.host = host
	q.mu.Unlock()
	if q.cfg.CreateDirectory {
		if err := os.MkdirAll(q.cfg.Directory, 0o750); err != nil {
			return fmt.Errorf("queue_storage: create directory: %w", err)
		}
	}
	st, err := os.Stat(q.cfg.Directory)
	switch {
	case err != nil:
		return fmt.Errorf("queue_storage: directory %q: %w (set create_directory: true to create it)", q.cfg.Directory, err)
	case !st.IsDir():
		return fmt.Errorf("queue_storage: directory %q is not a directory", q.cfg.Directory)
	}
	return nil
}

// Shutdown closes the journals that their components left open.
func (q *queueStorage) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	open := make([]*client, 0, len(q.clients))
	for c := range q.clients {
		open = append(open, c)
	}
	q.mu.Unlock()
	var errs []error
	for _, c := range open {
		errs = append(errs, c.Close(ctx))
	}
	q.tel.Shutdown()
	return errors.Join(errs...)
}

// GetClient opens the component's journal: <directory>/<name>.journal,
// where <name> is the file name file_storage would give the same component,
// so that its file is found and imported.
func (q *queueStorage) GetClient(ctx context.Context, kind component.Kind, id component.ID, storageName string) (storage.Client, error) {
	name := fmt.Sprintf("%s_%s_%s", kindString(kind), id.Type(), id.Name())
	if storageName != "" {
		name += "_" + storageName
	}
	name = sanitize(name)
	dir := filepath.Join(q.cfg.Directory, name+".journal")
	attrs := journalAttrs(name)
	j, err := journal.Open(dir, journal.Options{
		Sync: q.cfg.FSync, SegmentSize: q.cfg.SegmentSize, Reserve: journal.DefaultReserve,
		ObserveSync: syncObserver(context.WithoutCancel(ctx), q.tel, attrs),
	})
	if err != nil {
		return nil, fmt.Errorf("queue_storage: open %s: %w", dir, err)
	}
	rec := j.Recovered()
	q.logger.Info("Opened queue journal", zap.String("directory", dir), zap.Int("segments", rec.Segments),
		zap.Int("records", rec.Records), zap.Int("keys", rec.Keys))
	if rec.TornBytes > 0 {
		q.logger.Warn("Cut off the end of the queue journal: a write was cut short by a crash before it was acknowledged",
			zap.String("directory", dir), zap.Int64("bytes", rec.TornBytes))
	}
	for _, d := range rec.Damaged {
		q.logger.Error("Skipped damaged records in the queue journal: their queue items are lost, the records after them are kept",
			zap.String("directory", dir), zap.String("file", d.File), zap.Int64("offset", d.Offset),
			zap.Int64("bytes", d.Bytes), zap.Int("records", d.Records), zap.Bool("records_exact", d.Exact))
	}
	recordRecovery(ctx, q.tel, rec, attrs)
	if q.cfg.ImportFileStorage {
		if err := importFileStorage(filepath.Join(q.cfg.Directory, name), j, q.logger); err != nil {
			_ = j.Close()
			return nil, fmt.Errorf("queue_storage: import file_storage data: %w", err)
		}
	}
	c := &client{j: j, owner: q, name: name, attrs: attrs, stop: make(chan struct{}), done: make(chan struct{})}
	go c.syncEvery(q.cfg.SyncInterval, q.logger)
	q.mu.Lock()
	q.clients[c] = struct{}{}
	q.mu.Unlock()
	return c, nil
}

// importFileStorage moves the data a file_storage extension kept for the
// same component (a bbolt file, bucket "default") into the journal, then
// removes the file. A crash midway leaves the file, and the next start
// imports it again: setting the same keys twice is harmless.
func importFileStorage(path string, j *journal.Journal, logger *zap.Logger) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) || (err == nil && st.IsDir()) {
		return nil
	}
	if err != nil {
		return err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	keys, bytes := 0, 0
	var ops []journal.Op
	size := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		berr := j.Batch(ops)
		ops, size = nil, 0
		return berr
	}
	err = db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("default"))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			ops = append(ops, journal.Op{Kind: journal.Set, Key: string(k), Value: append([]byte(nil), v...)})
			keys++
			bytes += len(v)
			if size += len(v); size >= 16<<20 {
				return flush()
			}
			return nil
		})
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = j.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	logger.Info("Imported the file_storage queue into the queue journal, and removed its file",
		zap.String("file", path), zap.Int("keys", keys), zap.Int("bytes", bytes))
	return nil
}

func kindString(k component.Kind) string {
	switch k {
	case component.KindReceiver:
		return "receiver"
	case component.KindProcessor:
		return "processor"
	case component.KindExporter:
		return "exporter"
	case component.KindExtension:
		return "extension"
	case component.KindConnector:
		return "connector"
	default:
		return "other"
	}
}

// sanitize is file_storage's: characters unsafe in a file name become a
// tilde and their Unicode code point in hex.
func sanitize(name string) string {
	var b strings.Builder
	for _, r := range name {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' || r == '-' || r == '.' {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, "~%04X", r)
	}
	return b.String()
}

// client is one component's storage.Client on its journal.
type client struct {
	j     *journal.Journal
	owner *queueStorage
	name  string // the journal's, for telemetry and status
	attrs metric.MeasurementOption
	once  sync.Once
	stop  chan struct{}
	done  chan struct{}
}

var _ storage.Client = (*client)(nil)

func (c *client) Get(ctx context.Context, key string) ([]byte, error) {
	ops := []journal.Op{{Kind: journal.Get, Key: key}}
	if err := c.batch(ctx, ops); err != nil {
		return nil, err
	}
	return ops[0].Value, nil
}

func (c *client) Set(ctx context.Context, key string, value []byte) error {
	return c.batch(ctx, []journal.Op{{Kind: journal.Set, Key: key, Value: value}})
}

func (c *client) Delete(ctx context.Context, key string) error {
	return c.batch(ctx, []journal.Op{{Kind: journal.Delete, Key: key}})
}

// batch runs ops on the journal, counts a write refused for space, and
// reports a change of the journal's health.
func (c *client) batch(ctx context.Context, ops []journal.Op) error {
	err := c.j.Batch(ops)
	if errors.Is(err, journal.ErrDiskFull) {
		c.owner.tel.QueueStorageWritesRefused.Add(ctx, 1, c.attrs)
	}
	if err != nil || c.owner.unhealthy.Load() {
		c.owner.checkHealth()
	}
	return err
}

// Batch runs the operations as one journal record; gets are answered in place.
func (c *client) Batch(ctx context.Context, ops ...*storage.Operation) error {
	jops := make([]journal.Op, len(ops))
	for i, op := range ops {
		jops[i] = journal.Op{Key: op.Key, Value: op.Value}
		switch op.Type {
		case storage.Get:
			jops[i].Kind = journal.Get
		case storage.Set:
			jops[i].Kind = journal.Set
		case storage.Delete:
			jops[i].Kind = journal.Delete
		default:
			return fmt.Errorf("queue_storage: unknown operation type %d", op.Type)
		}
	}
	if err := c.batch(ctx, jops); err != nil {
		return err
	}
	for i, op := range ops {
		if op.Type == storage.Get {
			op.Value = jops[i].Value
		}
	}
	return nil
}

// Close syncs and closes the journal; later calls return nil.
func (c *client) Close(context.Context) error {
	var err error
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		err = c.j.Close()
		c.owner.mu.Lock()
		delete(c.owner.clients, c)
		c.owner.mu.Unlock()
	})
	return err
}

// syncEvery makes overwrites and deletes durable within interval.
func (c *client) syncEvery(interval time.Duration, logger *zap.Logger) {
	defer close(c.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			err := c.j.Sync()
			if err != nil && !errors.Is(err, journal.ErrClosed) {
				logger.Warn("Queue journal sync failed", zap.Error(err))
			}
			if err != nil || c.owner.unhealthy.Load() {
				c.owner.checkHealth()
			}
		}
	}
}
