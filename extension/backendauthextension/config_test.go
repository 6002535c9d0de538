package backendauthextension

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	tests := []struct {
		id   component.ID
		want *Config
	}{
		{component.NewID(componentType), &Config{Endpoint: "backend.example:4317", Header: "Authentication", Token: "s3cret-token"}},
		{component.NewIDWithName(componentType, "file"), &Config{Endpoint: "https://backend.example:4318",
			Header: "Authorization", Scheme: "Bearer", TokenFile: "/var/run/secrets/backend/token"}},
		{component.NewIDWithName(componentType, "plaintext"), &Config{Endpoint: "http://backend.example:4318",
			Header: "Authentication", Token: "s3cret-token", Insecure: true}},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			cfg := NewFactory().CreateDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			assert.Equal(t, tt.want, cfg)
			assert.NoError(t, confmap.Validate(cfg))
		})
	}
}

func TestValidate(t *testing.T) {
	const secret = "s3cret-token"
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // every substring must be in the error
	}{
		{"no endpoint", Config{Header: "Authentication", Token: secret}, []string{"OTLP_BACKEND_ENDPOINT"}},
		{"no token", Config{Endpoint: "b:4317", Header: "Authentication"}, []string{"OTLP_BACKEND_TOKEN", "OTLP_BACKEND_TOKEN_FILE"}},
		{"nothing", Config{Header: "Authentication"}, []string{"OTLP_BACKEND_ENDPOINT", "OTLP_BACKEND_TOKEN"}},
		{"two tokens", Config{Endpoint: "b:4317", Header: "Authentication", Token: secret, TokenFile: "/t"}, []string{"set only one"}},
		{"empty header means the default", Config{Endpoint: "b:4317", Token: secret}, nil},
		{"bad header", Config{Endpoint: "b:4317", Header: "Auth: x", Token: secret}, []string{"not a valid HTTP header name"}},
		{"two-word scheme", Config{Endpoint: "b:4317", Header: "A", Scheme: "Bearer x", Token: secret}, []string{"OTLP_BACKEND_AUTH_SCHEME"}},
		{"space in token", Config{Endpoint: "b:4317", Header: "A", Token: "two " + secret}, []string{"space or tab"}},
		{"tab in token", Config{Endpoint: "b:4317", Header: "A", Token: secret + "\tx"}, []string{"space or tab"}},
		{"spaces around the token", Config{Endpoint: "b:4317", Header: "A", Token: " " + secret + " "}, nil},
		{"line break in token", Config{Endpoint: "b:4317", Header: "A", Token: secret + "\nX: y"}, []string{"line break"}},
		{"plaintext without opt-in", Config{Endpoint: "http://b:4318", Header: "A", Token: secret}, []string{"OTLP_BACKEND_INSECURE=true"}},
		{"plaintext with opt-in", Config{Endpoint: "http://b:4318", Header: "A", Token: secret, Insecure: true}, nil},
		{"grpc host:port", Config{Endpoint: "b:4317", Header: "A", Token: secret}, nil},
		{"bearer", Config{Endpoint: "https://b", Header: "Authorization", Scheme: "Bearer", TokenFile: "/t"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == nil {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
			assert.NotContains(t, err.Error(), secret, "the token leaked into the error")
		})
	}
}

// An env variable set to "" expands to nothing, which confmap turns into the
// zero value: the empty header must still mean the default.
func TestEmptyValuesMeanDefaults(t *testing.T) {
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	require.NoError(t, confmap.NewFromStringMap(map[string]any{"header": nil, "scheme": nil, "insecure": nil}).Unmarshal(cfg))
	assert.Equal(t, defaultHeader, cfg.header())
	assert.Empty(t, cfg.Scheme)
	assert.False(t, cfg.Insecure)
}

// With protocol: http (config-http.yaml), an endpoint the OTLP/HTTP exporter
// cannot send to stops the start with the variable and the https:// form.
func TestValidateHTTPEndpointForm(t *testing.T) {
	const secret = "s3cret-token"
	for _, tt := range []struct {
		endpoint string
		want     string // "" means valid
	}{
		{"10.0.0.1:4318", `endpoint "10.0.0.1:4318" (OTLP_BACKEND_ENDPOINT) is not a base URL, as OTLP/HTTP needs: write https://10.0.0.1:4318`},
		{"backend.example:4318", "write https://backend.example:4318"},
		{"backend.example", "write https://backend.example"},
		{"grpc://backend.example:4317", "write https://backend.example:4317"},
		{"https://user:pw@", "write https://host[:port]"},
		{"https://backend.example", ""},
		{"https://backend.example:4318/otlp", ""},
		{"[::1]:4318", "write https://[::1]:4318"},
	} {
		t.Run(tt.endpoint, func(t *testing.T) {
			err := (&Config{Endpoint: tt.endpoint, Token: secret, Protocol: "http"}).Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "OTLP_BACKEND_ENDPOINT")
			assert.NotContains(t, err.Error(), "pw", "user info is not repeated")
		})
	}
	// gRPC keeps host:port, and no protocol checks no form.
	require.NoError(t, (&Config{Endpoint: "backend.example:4317", Token: secret, Protocol: "grpc"}).Validate())
	require.NoError(t, (&Config{Endpoint: "backend.example:4317", Token: secret}).Validate())
	require.ErrorContains(t, (&Config{Endpoint: "https://b", Token: secret, Protocol: "otlp"}).Validate(), `protocol "otlp" must be grpc, http or empty`)
}
