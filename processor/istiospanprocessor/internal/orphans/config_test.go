package orphans

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
)

func TestDefaultConfig(t *testing.T) {
	cfg := DefaultConfig()
	assert.True(t, cfg.Enabled)
	assert.Empty(t, cfg.Origins)
	assert.NotNil(t, cfg.Origins, "origins defaults to an empty list, not null")
	assert.True(t, cfg.LinkByRequestID)
	assert.Equal(t, 30*time.Second, cfg.Window)
	assert.Equal(t, 100000, cfg.MaxTracked)
	require.NoError(t, cfg.Validate())
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr []string // substrings; nil means valid
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "origins name and name.namespace", mutate: func(c *Config) { c.Origins = []string{"loadgen", "cron.batch"} }},
		{name: "zero window", mutate: func(c *Config) { c.Window = 0 },
			wantErr: []string{"orphans.window must be > 0", "got 0s"}},
		{name: "negative window", mutate: func(c *Config) { c.Window = -time.Second },
			wantErr: []string{"orphans.window must be > 0", "got -1s"}},
		{name: "zero max_tracked", mutate: func(c *Config) { c.MaxTracked = 0 },
			wantErr: []string{"orphans.max_tracked must be > 0", "got 0"}},
		{name: "empty origin", mutate: func(c *Config) { c.Origins = []string{"ok", ""} },
			wantErr: []string{"orphans.origins[1]", `"name" or "name.namespace"`}},
		{name: "origin with space", mutate: func(c *Config) { c.Origins = []string{"load gen"} },
			wantErr: []string{`orphans.origins[0] is "load gen"`}},
		{name: "origin with trailing dot", mutate: func(c *Config) { c.Origins = []string{"loadgen."} },
			wantErr: []string{"orphans.origins[0]"}},
		{name: "every error at once", mutate: func(c *Config) { c.Window, c.MaxTracked = 0, -1 },
			wantErr: []string{"orphans.window", "orphans.max_tracked", "got -1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.wantErr {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestNewDetectorRejectsBadConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Window = 0
	_, err := NewDetector(cfg, componenttest.NewNopTelemetrySettings())
	require.ErrorContains(t, err, "orphans.window must be > 0")
}
