package queuestorageextension // import "github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension"

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension/internal/journal"
)

type queueStorage struct {
	cfg    *Config
	logger *zap.Logger

	mu      sync.Mutex
	clients map[*client]struct{}
}

var _ storage.Extension = (*queueStorage)(nil)

func newQueueStorage(cfg *Config, logger *zap.Logger) *queueStorage {
	return &queueStorage{cfg: cfg, logger: logger, clients: map[*client]struct{}{}}
}

func (q *queueStorage) Start(context.Context, component.Host) error {
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
	return errors.Join(errs...)
}

// GetClient opens the component's journal: <directory>/<name>.journal,
// where <name> is the file name file_storage would give the same component,
// so that its file is found and imported.
func (q *queueStorage) GetClient(_ context.Context, kind component.Kind, id component.ID, storageName string) (storage.Client, error) {
	name := fmt.Sprintf("%s_%s_%s", kindString(kind), id.Type(), id.Name())
	if storageName != "" {
		name += "_" + storageName
	}
	name = sanitize(name)
	dir := filepath.Join(q.cfg.Directory, name+".journal")
	j, err := journal.Open(dir, journal.Options{Sync: q.cfg.FSync, SegmentSize: q.cfg.SegmentSize, Reserve: journal.DefaultReserve})
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
	if q.cfg.ImportFileStorage {
		if err := importFileStorage(filepath.Join(q.cfg.Directory, name), j, q.logger); err != nil {
			_ = j.Close()
			return nil, fmt.Errorf("queue_storage: import file_storage data: %w", err)
		}
	}
	c := &client{j: j, owner: q, stop: make(chan struct{}), done: make(chan struct{})}
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
	once  sync.Once
	stop  chan struct{}
	done  chan struct{}
}

var _ storage.Client = (*client)(nil)

func (c *client) Get(_ context.Context, key string) ([]byte, error) {
	ops := []journal.Op{{Kind: journal.Get, Key: key}}
	if err := c.j.Batch(ops); err != nil {
		return nil, err
	}
	return ops[0].Value, nil
}

func (c *client) Set(_ context.Context, key string, value []byte) error {
	return c.j.Batch([]journal.Op{{Kind: journal.Set, Key: key, Value: value}})
}

func (c *client) Delete(_ context.Context, key string) error {
	return c.j.Batch([]journal.Op{{Kind: journal.Delete, Key: key}})
}

// Batch runs the operations as one journal record; gets are answered in place.
func (c *client) Batch(_ context.Context, ops ...*storage.Operation) error {
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
	if err := c.j.Batch(jops); err != nil {
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
			if err := c.j.Sync(); err != nil && !errors.Is(err, journal.ErrClosed) {
				logger.Warn("Queue journal sync failed", zap.Error(err))
			}
		}
	}
}
