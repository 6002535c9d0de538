package backendauthextension // import "github.com/otelcol-istio/otelcol-istio/extension/backendauthextension"

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/bearertokenauthextension"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/extensionauth"
	"go.opentelemetry.io/collector/extension/extensionmiddleware"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

var (
	_ extension.Extension            = (*backendAuth)(nil)
	_ extensionauth.HTTPClient       = (*backendAuth)(nil)
	_ extensionauth.GRPCClient       = (*backendAuth)(nil)
	_ extensionmiddleware.GRPCClient = (*backendAuth)(nil)
	_ credentials.PerRPCCredentials  = (*perRPC)(nil)
	_ http.RoundTripper              = (*roundTripper)(nil)
)

var (
	errEmptyCredentials = errors.New("backend_auth: the token is empty; not sending an empty credential")
	errPlaintextRefused = errors.New("backend_auth: refusing to send the token over plaintext http://; set OTLP_BACKEND_INSECURE=true to allow it")
)

// A missing token file is retried for tokenFileWait before Start fails:
// long enough for a volume being mounted, short enough to fail visibly.
var (
	tokenFileWait    = 5 * time.Second
	tokenFileRetries = 5
)

// backendAuth runs a bearertokenauth extension for the token and wraps its
// gRPC credentials and HTTP round tripper.
type backendAuth struct {
	cfg      *Config
	logger   *zap.Logger
	inner    extension.Extension
	grpcAuth extensionauth.GRPCClient
	httpAuth extensionauth.HTTPClient
	rejected *rejectionLog
}

func newBackendAuth(ctx context.Context, set extension.Settings, cfg *Config) (*backendAuth, error) {
	factory := bearertokenauthextension.NewFactory()
	inner := factory.CreateDefaultConfig().(*bearertokenauthextension.Config)
	inner.Header = cfg.header()
	inner.Scheme = cfg.Scheme
	inner.BearerToken = cfg.Token
	inner.Filename = cfg.TokenFile
	if cfg.TokenFile != "" {
		// Start fails, and so does the collector, when the file cannot be
		// read: never run with an empty header.
		inner.RetryOnFailure.Enabled = true
		inner.RetryOnFailure.MaxRetries = tokenFileRetries
		inner.RetryOnFailure.Interval = tokenFileWait / time.Duration(tokenFileRetries)
		inner.WaitForTokenFile = true
	}
	innerSet := set
	innerSet.ID = component.NewIDWithName(factory.Type(), set.ID.String())
	innerSet.Logger = set.Logger.With(zap.String("delegate", innerSet.ID.String()))
	ext, err := factory.Create(ctx, innerSet, inner)
	if err != nil {
		return nil, fmt.Errorf("backend_auth: %w", err)
	}
	grpcAuth, okG := ext.(extensionauth.GRPCClient)
	httpAuth, okH := ext.(extensionauth.HTTPClient)
	if !okG || !okH {
		return nil, errors.New("backend_auth: bearertokenauth is no longer a gRPC and HTTP client authenticator")
	}
	return &backendAuth{
		cfg: cfg, logger: set.Logger, inner: ext, grpcAuth: grpcAuth, httpAuth: httpAuth,
		rejected: newRejectionLog(set.Logger),
	}, nil
}

func (a *backendAuth) Start(ctx context.Context, host component.Host) error {
	if a.cfg.Insecure {
		a.logger.Warn("OTLP_BACKEND_INSECURE=true: spans and the backend token are sent without TLS",
			zap.String("endpoint", a.cfg.Endpoint))
	}
	if err := a.inner.Start(ctx, host); err != nil {
		if a.cfg.TokenFile != "" {
			return fmt.Errorf("backend_auth: token_file (OTLP_BACKEND_TOKEN_FILE) %q: %w", a.cfg.TokenFile, err)
		}
		return fmt.Errorf("backend_auth: %w", err)
	}
	return nil
}

func (a *backendAuth) Shutdown(ctx context.Context) error { return a.inner.Shutdown(ctx) }

// PerRPCCredentials returns bearertokenauth's credentials, with TLS required
// unless insecure is set.
func (a *backendAuth) PerRPCCredentials() (credentials.PerRPCCredentials, error) {
	c, err := a.grpcAuth.PerRPCCredentials()
	if err != nil {
		return nil, err
	}
	return &perRPC{inner: c, requireTLS: !a.cfg.Insecure}, nil
}

// GetGRPCClientOptions adds an interceptor that notices rejected credentials;
// it is used when the exporter lists backend_auth under middlewares, as the
// shipped configs do (an authenticator cannot see gRPC responses).
func (a *backendAuth) GetGRPCClientOptions(context.Context) ([]grpc.DialOption, error) {
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, cc, opts...)
			a.rejected.observeGRPC(err)
			return err
		})}, nil
}

// RoundTripper returns bearertokenauth's round tripper, refusing plaintext
// unless insecure is set, and noticing 401 and 403 answers.
func (a *backendAuth) RoundTripper(base http.RoundTripper) (http.RoundTripper, error) {
	rt, err := a.httpAuth.RoundTripper(base)
	if err != nil {
		return nil, err
	}
	return &roundTripper{inner: rt, auth: a}, nil
}

type perRPC struct {
	inner      credentials.PerRPCCredentials
	requireTLS bool
}

func (p *perRPC) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	md, err := p.inner.GetRequestMetadata(ctx, uri...)
	if err != nil {
		return nil, err
	}
	for _, v := range md {
		if strings.TrimSpace(v) == "" {
			return nil, errEmptyCredentials
		}
	}
	return md, nil
}

func (p *perRPC) RequireTransportSecurity() bool { return p.requireTLS }

type roundTripper struct {
	inner http.RoundTripper
	auth  *backendAuth
}

func (r *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !r.auth.cfg.Insecure {
		return nil, errPlaintextRefused
	}
	resp, err := r.inner.RoundTrip(req)
	if err == nil {
		r.auth.rejected.observeHTTP(resp.StatusCode)
	}
	return resp, err
}
