package backendauthextension // import "github.com/otelcol-istio/otelcol-istio/extension/backendauthextension"

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/collector/config/configopaque"
	"golang.org/x/net/http/httpguts"
)

// Config says how the collector authenticates to the tracing backend. The
// shipped configs fill every key from an OTLP_BACKEND_* variable, so the
// errors below name the variable next to the key.
type Config struct {
	// Endpoint is the exporter's endpoint, repeated here so that a missing
	// one stops the start with the variable's name, and so that a plaintext
	// http:// endpoint needs Insecure.
	Endpoint string `mapstructure:"endpoint"`
	// Header carries the token. Empty means the default, Authentication, so
	// that an env variable set to "" behaves like an unset one.
	Header string `mapstructure:"header"`
	// Scheme is put before the token with one space ("Bearer"); empty sends
	// the raw token.
	Scheme string `mapstructure:"scheme"`
	// Token is the token itself. Exactly one of Token and TokenFile is set.
	Token configopaque.String `mapstructure:"token"`
	// TokenFile is read at start and again whenever it changes (a rotated
	// Kubernetes Secret), without a restart.
	TokenFile string `mapstructure:"token_file"`
	// Insecure allows sending the token without TLS.
	Insecure bool `mapstructure:"insecure"`
	// Protocol is the exporter's, "grpc" or "http"; empty checks no form.
	// With "http" the endpoint must be the base URL the OTLP/HTTP exporter
	// needs (https://host[:port]), which its own error ("endpoint must be a
	// valid URL") does not say, and a bare host:port it would even accept
	// and then fail to send to.
	Protocol string `mapstructure:"protocol"`

	// prevent unkeyed literal initialization
	_ struct{}
}

var (
	errNoEndpoint      = errors.New("endpoint is empty: set OTLP_BACKEND_ENDPOINT")
	errNoToken         = errors.New("token and token_file are both empty: set OTLP_BACKEND_TOKEN or OTLP_BACKEND_TOKEN_FILE")
	errTwoTokens       = errors.New("token and token_file are both set: set only one of OTLP_BACKEND_TOKEN and OTLP_BACKEND_TOKEN_FILE")
	errPlaintextNeedOK = errors.New("endpoint is plaintext http://: use https://, or set OTLP_BACKEND_INSECURE=true to send the token in plaintext")
)

// Validate checks every key; its errors never contain the token.
func (cfg *Config) Validate() error {
	var errs []error
	endpoint := strings.TrimSpace(cfg.Endpoint)
	switch {
	case endpoint == "":
		errs = append(errs, errNoEndpoint)
	case strings.HasPrefix(strings.ToLower(endpoint), "http://") && !cfg.Insecure:
		errs = append(errs, errPlaintextNeedOK)
	case cfg.Protocol == protocolHTTP && !isBaseURL(endpoint):
		errs = append(errs, httpEndpointError(endpoint))
	}
	if cfg.Protocol != "" && cfg.Protocol != protocolGRPC && cfg.Protocol != protocolHTTP {
		errs = append(errs, fmt.Errorf("protocol %q must be grpc, http or empty", cfg.Protocol))
	}
	switch {
	case cfg.Token == "" && cfg.TokenFile == "":
		errs = append(errs, errNoToken)
	case cfg.Token != "" && cfg.TokenFile != "":
		errs = append(errs, errTwoTokens)
	case strings.ContainsAny(string(cfg.Token), "\r\n"):
		// A header value cannot hold a line break; say so without the value.
		errs = append(errs, errors.New("token (OTLP_BACKEND_TOKEN) contains a line break"))
	case strings.ContainsAny(strings.TrimSpace(string(cfg.Token)), " \t"):
		// bearertokenauth sends only the first word of a token (the rest is
		// a comment in its token file format): refuse, rather than send a
		// credential the backend never issued.
		errs = append(errs, errors.New("token (OTLP_BACKEND_TOKEN) contains a space or tab: only the part before it would be sent"))
	}
	// RFC 9110 token characters only, which also keeps gRPC metadata keys
	// valid once lower-cased.
	if cfg.Header != "" && !httpguts.ValidHeaderFieldName(cfg.Header) {
		errs = append(errs, fmt.Errorf("header %q (OTLP_BACKEND_AUTH_HEADER) is not a valid HTTP header name", cfg.Header))
	}
	if strings.ContainsAny(cfg.Scheme, " \t\r\n") {
		errs = append(errs, fmt.Errorf("scheme %q (OTLP_BACKEND_AUTH_SCHEME) must be one word, such as Bearer, or empty", cfg.Scheme))
	}
	return errors.Join(errs...)
}

// The exporters' protocols, for Config.Protocol.
const (
	protocolGRPC = "grpc"
	protocolHTTP = "http"
)

// isBaseURL says whether endpoint is an absolute http(s) URL with a host.
func isBaseURL(endpoint string) bool {
	u, err := url.Parse(endpoint)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// httpEndpointError says what to write instead of endpoint. An endpoint with
// user info may hold a password, and is not repeated.
func httpEndpointError(endpoint string) error {
	const msg = "endpoint%s (OTLP_BACKEND_ENDPOINT) is not a base URL, as OTLP/HTTP needs: write https://%s " +
		"(/v1/traces is appended; http:// only with OTLP_BACKEND_INSECURE=true)"
	if strings.Contains(endpoint, "@") {
		return fmt.Errorf(msg, "", "host[:port]")
	}
	host := endpoint
	if _, rest, ok := strings.Cut(endpoint, "://"); ok {
		host = rest // a scheme other than http(s): keep what follows it
	}
	if host == "" {
		host = "host[:port]"
	}
	return fmt.Errorf(msg, fmt.Sprintf(" %q", endpoint), host)
}

// header is the header name to send the token in.
func (cfg *Config) header() string {
	if cfg.Header == "" {
		return defaultHeader
	}
	return cfg.Header
}
