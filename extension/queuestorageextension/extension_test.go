package queuestorageextension

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/extension/xextension/storage"

	"github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension/internal/metadata"
)

var exporterID = component.MustNewID("otlp_grpc")

func start(t *testing.T, cfg *Config) storage.Extension {
	t.Helper()
	ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, ext.Shutdown(context.Background())) })
	return ext.(storage.Extension)
}

func testConfig(dir string) *Config {
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.Directory = dir
	return cfg
}

func TestClientKeepsDataAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ext := start(t, testConfig(dir))
	c, err := ext.GetClient(ctx, component.KindExporter, exporterID, "traces")
	require.NoError(t, err)
	require.NoError(t, c.Set(ctx, "a", []byte("1")))
	require.NoError(t, c.Batch(ctx, storage.SetOperation("b", []byte("2")), storage.DeleteOperation("a")))
	require.NoError(t, c.Close(ctx))
	require.NoError(t, ext.Shutdown(ctx))

	// file_storage's file name for the same component, as a directory.
	_, err = os.Stat(filepath.Join(dir, "exporter_otlp_grpc__traces.journal"))
	require.NoError(t, err)

	ext = start(t, testConfig(dir))
	c, err = ext.GetClient(ctx, component.KindExporter, exporterID, "traces")
	require.NoError(t, err)
	defer c.Close(ctx)
	v, err := c.Get(ctx, "a")
	require.NoError(t, err)
	assert.Nil(t, v, "a missing key is (nil, nil), as the storage API says")
	get := storage.GetOperation("b")
	require.NoError(t, c.Batch(ctx, get))
	assert.Equal(t, "2", string(get.Value))
	require.NoError(t, c.Delete(ctx, "b"))
	v, err = c.Get(ctx, "b")
	require.NoError(t, err)
	assert.Nil(t, v)
}

// A queue file_storage left in the same directory for the same component is
// imported at the first start, and its file removed.
func TestImportsFileStorageQueue(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	boltPath := filepath.Join(dir, "exporter_otlp_grpc__traces")
	db, err := bbolt.Open(boltPath, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		b, cerr := tx.CreateBucket([]byte("default"))
		if cerr != nil {
			return cerr
		}
		for k, v := range map[string]string{"qmv0": "metadata", "0": "item 0", "1": "item 1"} {
			if perr := b.Put([]byte(k), []byte(v)); perr != nil {
				return perr
			}
		}
		return nil
	}))
	require.NoError(t, db.Close())

	ext := start(t, testConfig(dir))
	c, err := ext.GetClient(ctx, component.KindExporter, exporterID, "traces")
	require.NoError(t, err)
	defer c.Close(ctx)
	for k, want := range map[string]string{"qmv0": "metadata", "0": "item 0", "1": "item 1"} {
		v, gerr := c.Get(ctx, k)
		require.NoError(t, gerr)
		assert.Equal(t, want, string(v), k)
	}
	_, err = os.Stat(boltPath)
	require.ErrorIs(t, err, os.ErrNotExist, "the imported file is removed")
}

func TestImportCanBeTurnedOff(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	boltPath := filepath.Join(dir, "exporter_otlp_grpc__traces")
	require.NoError(t, os.WriteFile(boltPath, []byte("not even bbolt"), 0o600))
	cfg := testConfig(dir)
	cfg.ImportFileStorage = false
	c, err := start(t, cfg).GetClient(ctx, component.KindExporter, exporterID, "traces")
	require.NoError(t, err)
	require.NoError(t, c.Close(ctx))
	_, err = os.Stat(boltPath)
	require.NoError(t, err, "left alone")
}

func TestUnreadableFileStorageQueueFailsTheStart(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "exporter_otlp_grpc__traces"), []byte("not bbolt"), 0o600))
	_, err := start(t, testConfig(dir)).GetClient(context.Background(), component.KindExporter, exporterID, "traces")
	require.ErrorContains(t, err, "queue_storage: import file_storage data")
}

func TestDirectoryMustExistUnlessCreated(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "a", "b")
	ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), testConfig(missing))
	require.NoError(t, err)
	err = ext.Start(context.Background(), componenttest.NewNopHost())
	require.ErrorContains(t, err, "set create_directory: true to create it")

	cfg := testConfig(missing)
	cfg.CreateDirectory = true
	start(t, cfg)
	st, err := os.Stat(missing)
	require.NoError(t, err)
	assert.True(t, st.IsDir())
}

// Shutdown closes the journals a component left open (and syncs them).
func TestShutdownClosesOpenClients(t *testing.T) {
	ctx := context.Background()
	ext, err := NewFactory().Create(ctx, extensiontest.NewNopSettings(metadata.Type), testConfig(t.TempDir()))
	require.NoError(t, err)
	require.NoError(t, ext.Start(ctx, componenttest.NewNopHost()))
	c, err := ext.(storage.Extension).GetClient(ctx, component.KindExporter, exporterID, "traces")
	require.NoError(t, err)
	require.NoError(t, ext.Shutdown(ctx))
	require.Error(t, c.Set(ctx, "a", []byte("1")))
	require.NoError(t, c.Close(ctx))
}
