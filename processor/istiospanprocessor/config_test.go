package istiospanprocessor

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	tests := []struct {
		id        component.ID
		want      *Config
		wantErr   string // from Validate
		unmarshal string // from Unmarshal
	}{
		{
			id:   component.NewID(metadata.Type),
			want: &Config{ServiceName: ServiceNameConfig{Format: FormatCanonicalNameAndNamespace, SemconvAttributes: true}, Orphans: defaultOrphansConfig(), InvalidUTF8: InvalidUTF8Reject},
		},
		{
			id:   component.NewIDWithName(metadata.Type, "canonical_name_only"),
			want: &Config{ServiceName: ServiceNameConfig{Format: FormatCanonicalNameOnly, SemconvAttributes: true}, Orphans: defaultOrphansConfig(), InvalidUTF8: InvalidUTF8Reject},
		},
		{
			id:   component.NewIDWithName(metadata.Type, "app_label_no_semconv"),
			want: &Config{ServiceName: ServiceNameConfig{Format: FormatAppLabelAndNamespace, SemconvAttributes: false}, Orphans: defaultOrphansConfig(), InvalidUTF8: InvalidUTF8Reject},
		},
		{
			id:   component.NewIDWithName(metadata.Type, "preserve"),
			want: &Config{ServiceName: ServiceNameConfig{Format: FormatPreserve, SemconvAttributes: true}, Orphans: defaultOrphansConfig(), InvalidUTF8: InvalidUTF8Reject},
		},
		{
			id:      component.NewIDWithName(metadata.Type, "unknown_format"),
			wantErr: `service_name.format "canonical_name_and_namespace" must be one of APP_LABEL_AND_NAMESPACE, CANONICAL_NAME_ONLY, CANONICAL_NAME_AND_NAMESPACE, preserve`,
		},
		{
			id:      component.NewIDWithName(metadata.Type, "otel_semconv_format"),
			wantErr: `service_name.format "OTEL_SEMANTIC_CONVENTIONS" must be one of APP_LABEL_AND_NAMESPACE, CANONICAL_NAME_ONLY, CANONICAL_NAME_AND_NAMESPACE, preserve (OTEL_SEMANTIC_CONVENTIONS is an Istio input mode`,
		},
		{
			id:      component.NewIDWithName(metadata.Type, "empty_format"),
			wantErr: `service_name.format "" must be one of`,
		},
		{
			id:        component.NewIDWithName(metadata.Type, "unknown_key"),
			unmarshal: "formt",
		},
		{
			id: component.NewIDWithName(metadata.Type, "orphans_custom"),
			want: &Config{
				ServiceName: ServiceNameConfig{Format: FormatCanonicalNameAndNamespace, SemconvAttributes: true},
				Orphans: OrphansConfig{
					Enabled:         true,
					Origins:         []string{"loadgen", "nightly-report.batch"},
					LinkByRequestID: false,
					Window:          45 * time.Second,
					MaxTracked:      5000,
				},
				InvalidUTF8: InvalidUTF8Reject,
			},
		},
		{
			id: component.NewIDWithName(metadata.Type, "orphans_disabled"),
			want: &Config{
				ServiceName: ServiceNameConfig{Format: FormatCanonicalNameAndNamespace, SemconvAttributes: true},
				Orphans: func() OrphansConfig {
					c := defaultOrphansConfig()
					c.Enabled = false
					return c
				}(),
				InvalidUTF8: InvalidUTF8Reject,
			},
		},
		{
			id:      component.NewIDWithName(metadata.Type, "orphans_zero_window"),
			wantErr: "orphans.window must be > 0 (got 0s)",
		},
		{
			id:      component.NewIDWithName(metadata.Type, "orphans_negative_max_tracked"),
			wantErr: "orphans.max_tracked must be > 0 (got -1)",
		},
		{
			id:      component.NewIDWithName(metadata.Type, "orphans_empty_origin"),
			wantErr: `orphans.origins[1] is ""`,
		},
		{
			id:        component.NewIDWithName(metadata.Type, "orphans_unknown_key"),
			unmarshal: "max_track",
		},
		{
			id:        component.NewIDWithName(metadata.Type, "orphans_bad_window"),
			unmarshal: "window",
		},
		{
			id: component.NewIDWithName(metadata.Type, "forward_invalid_utf8"),
			want: &Config{
				ServiceName: ServiceNameConfig{Format: FormatCanonicalNameAndNamespace, SemconvAttributes: true},
				Orphans:     defaultOrphansConfig(),
				InvalidUTF8: InvalidUTF8Forward,
			},
		},
		{
			id:      component.NewIDWithName(metadata.Type, "unknown_invalid_utf8"),
			wantErr: `invalid_utf8 "drop" must be one of reject, replace, forward`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			cfg := NewFactory().CreateDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			err = sub.Unmarshal(cfg)
			if tt.unmarshal != "" {
				require.ErrorContains(t, err, tt.unmarshal)
				return
			}
			require.NoError(t, err)
			err = confmap.Validate(cfg)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				// confmap.Validate walks nested blocks itself: each problem
				// must be reported once, not again by a parent's Validate.
				assert.Equal(t, 1, strings.Count(err.Error(), tt.wantErr), "error repeated: %v", err)
				if strings.HasPrefix(tt.wantErr, "service_name") {
					assert.ErrorIs(t, err, errInvalidFormat)
				}
				if strings.HasPrefix(tt.wantErr, "invalid_utf8") {
					assert.ErrorIs(t, err, errInvalidUTF8Action)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, cfg)
		})
	}
}

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	assert.Equal(t, FormatCanonicalNameAndNamespace, cfg.ServiceName.Format)
	assert.True(t, cfg.ServiceName.SemconvAttributes)
	assert.Equal(t, defaultOrphansConfig(), cfg.Orphans)
	assert.Equal(t, InvalidUTF8Reject, cfg.InvalidUTF8)
	require.NoError(t, confmap.Validate(cfg))
}
