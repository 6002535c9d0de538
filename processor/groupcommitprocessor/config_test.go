package groupcommitprocessor

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/otelcol-istio/otelcol-istio/processor/groupcommitprocessor/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	tests := []struct {
		name    string
		want    *Config
		wantErr []error
	}{
		{name: "", want: &Config{MaxSpans: 4096, MaxBytes: 4 << 20, MaxItems: 262144, MaxWait: 10 * time.Millisecond}},
		{name: "bounded", want: &Config{MaxSpans: 512, MaxBytes: 0, MaxItems: 0, MaxWait: 0}},
		{name: "invalid", wantErr: []error{errMaxSpans, errMaxBytes, errMaxItems, errMaxWait}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := NewFactory().CreateDefaultConfig()
			sub, err := cm.Sub(component.NewIDWithName(metadata.Type, tt.name).String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			err = cfg.(*Config).Validate()
			if tt.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, tt.want, cfg)
				return
			}
			for _, want := range tt.wantErr {
				assert.ErrorIs(t, err, want)
			}
		})
	}
}

func TestUnknownKeyRejected(t *testing.T) {
	cfg := NewFactory().CreateDefaultConfig()
	err := confmap.NewFromStringMap(map[string]any{"max_requests": 3}).Unmarshal(cfg)
	assert.ErrorContains(t, err, "max_requests")
}
