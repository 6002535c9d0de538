package healthcheckextension

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/metadata"
)

func loadLegacyPort(t *testing.T, name string) (*Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "legacy_port.yaml"))
	require.NoError(t, err)
	sub, err := cm.Sub(component.NewIDWithName(metadata.Type, name).String())
	require.NoError(t, err)
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	return cfg, sub.Unmarshal(cfg)
}

// The stock collector's `health_check: {port: 13133}` listens where contrib
// listened with it, and says what to write instead.
func TestLegacyPortBecomesEndpoint(t *testing.T) {
	for name, want := range map[string]string{"port": "0.0.0.0:13133", "port-from-env": "0.0.0.0:8080"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadLegacyPort(t, name)
			require.NoError(t, err)
			require.NoError(t, confmap.Validate(cfg))
			assert.Equal(t, want, cfg.ServerConfig.NetAddr.Endpoint)
			assert.Equal(t, "/", cfg.Path, "the other keys keep their defaults")
		})
	}
}

func TestLegacyPortWarnsNamingEndpoint(t *testing.T) {
	cfg, err := loadLegacyPort(t, "port")
	require.NoError(t, err)
	core, logs := observer.New(zapcore.WarnLevel)
	set := extensiontest.NewNopSettings(metadata.Type)
	set.Logger = zap.New(core)
	ext, err := NewFactory().Create(context.Background(), set, cfg)
	require.NoError(t, err)
	require.NotNil(t, ext)
	warnings := logs.All()
	require.Len(t, warnings, 1)
	assert.Contains(t, warnings[0].Message, `"port: 13133" is contrib's removed key`)
	assert.Contains(t, warnings[0].Message, `Write endpoint: "0.0.0.0:13133" instead`)
	assert.Contains(t, warnings[0].Message, `${env:MY_POD_IP}:13133`)

	// Without port, no warning.
	logs.TakeAll()
	_, err = NewFactory().Create(context.Background(), set, NewFactory().CreateDefaultConfig())
	require.NoError(t, err)
	assert.Zero(t, logs.Len())
}

func TestLegacyPortErrors(t *testing.T) {
	for name, want := range map[string]struct {
		err error
		msg string
	}{
		"port-and-endpoint": {errLegacyPortBoth, "both endpoint and contrib's removed port are set: remove port"},
		"port-out-of-range": {errLegacyPortValue, `port must be a TCP port (1-65535); better, replace it with endpoint: "0.0.0.0:13133", got 70000`},
		"port-not-a-number": {errLegacyPortValue, "got health"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadLegacyPort(t, name)
			require.ErrorIs(t, err, want.err)
			assert.Contains(t, err.Error(), want.msg)
		})
	}
}
