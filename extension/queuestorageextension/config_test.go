package queuestorageextension

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension/internal/metadata"
)

func loadConfig(t *testing.T, name string) (*Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	sub, err := cm.Sub(component.MustNewIDWithName(metadata.Type.String(), name).String())
	require.NoError(t, err)
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	require.NoError(t, sub.Unmarshal(cfg))
	return cfg, confmap.Validate(cfg)
}

func TestConfig(t *testing.T) {
	cfg, err := loadConfig(t, "")
	require.NoError(t, err)
	assert.Equal(t, &Config{Directory: "/var/lib/otelcol-istio/queue", FSync: true, SyncInterval: time.Second,
		SegmentSize: 32 << 20, ImportFileStorage: true}, cfg)

	cfg, err = loadConfig(t, "all")
	require.NoError(t, err)
	assert.Equal(t, &Config{Directory: "/var/lib/otelcol-istio/queue", CreateDirectory: true, SyncInterval: 250 * time.Millisecond,
		SegmentSize: 8 << 20}, cfg)
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	_, err := loadConfig(t, "no_directory")
	require.ErrorContains(t, err, "directory must be set")
	_, err = loadConfig(t, "bad")
	require.ErrorContains(t, err, "sync_interval must be positive, got 0s")
	require.ErrorContains(t, err, "segment_size must be at least 1048576 (1 MiB), got 1024")
}
