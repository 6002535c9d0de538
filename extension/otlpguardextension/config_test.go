package otlpguardextension

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	for _, tt := range []struct {
		id      component.ID
		want    *Config
		invalid bool
	}{
		{id: component.NewID(metadata.Type), want: createDefaultConfig().(*Config)},
		{id: component.NewIDWithName(metadata.Type, "custom"), want: &Config{MaxValueDepth: 16, MaxSpansPerRequest: 1000, MaxItemsPerRequest: 50000,
			MaxExportRequestBytes: 1 << 20, MaxInFlightBytes: 8 << 20}},
		{id: component.NewIDWithName(metadata.Type, "off"), want: &Config{}},
		{id: component.NewIDWithName(metadata.Type, "negative"), invalid: true},
	} {
		t.Run(tt.id.String(), func(t *testing.T) {
			cfg := NewFactory().CreateDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			if tt.invalid {
				assert.ErrorIs(t, confmap.Validate(cfg), errNegative)
				return
			}
			assert.Equal(t, tt.want, cfg)
			assert.NoError(t, confmap.Validate(cfg))
		})
	}
}
