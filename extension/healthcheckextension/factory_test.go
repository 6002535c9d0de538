package healthcheckextension

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensioncapabilities"
	"go.opentelemetry.io/collector/extension/extensiontest"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/metadata"
)

func TestFactory(t *testing.T) {
	f := NewFactory()
	assert.Equal(t, "health_check", f.Type().String())
	assert.Equal(t, component.StabilityLevelAlpha, f.Stability())
}

func TestLifecycleWithDefaultConfig(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.ServerConfig.NetAddr.Endpoint = "127.0.0.1:0" // the default port may be in use on a test machine
	ext, err := NewFactory().Create(context.Background(), extensiontest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)

	// The collector discovers these capabilities by type assertion.
	assert.Implements(t, (*extensioncapabilities.ComponentStatusWatcher)(nil), ext)
	assert.Implements(t, (*extensioncapabilities.PipelineWatcher)(nil), ext)
	assert.Implements(t, (*extensioncapabilities.ConfigSnapshotWatcher)(nil), ext)
	_, ok := ext.(interface {
		RegisterStatusSource(name string, source func() any) (unregister func())
	})
	assert.True(t, ok, "the status-source contract is duck typed")

	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, ext.(extensioncapabilities.PipelineWatcher).Ready())
	require.NoError(t, ext.(extensioncapabilities.PipelineWatcher).NotReady())
	require.NoError(t, ext.Shutdown(context.Background()))
}
