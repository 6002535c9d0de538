package backendauthextension // import "github.com/otelcol-istio/otelcol-istio/extension/backendauthextension"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
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
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
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
	observer *attemptObserver
	echoes   *echoes
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
		observer: newAttemptObserver(set.ID, set.Logger), echoes: &echoes{scheme: cfg.Scheme},
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
	a.observer.start(host)
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
	return &perRPC{inner: c, requireTLS: !a.cfg.Insecure, echoes: a.echoes}, nil
}

// GetGRPCClientOptions adds an interceptor that sees every export call's
// outcome; it is used when the exporter lists backend_auth under middlewares,
// as the shipped configs do (an authenticator cannot see gRPC responses). It
// cleans the credential out of the backend's error message before the
// exporter can log it, classifies the outcome and reports it.
func (a *backendAuth) GetGRPCClientOptions(context.Context) ([]grpc.DialOption, error) {
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			var p peer.Peer
			err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&p))...)
			err = a.cleanGRPCError(err)
			if err == nil {
				a.cleanPartialSuccess(reply)
			}
			if out, ok := classifyGRPC(err, p.Addr != nil); ok {
				a.observer.observe(out)
			}
			return err
		})}, nil
}

// cleanGRPCError replaces a credential echoed in a status message. The
// status keeps its code and details (RetryInfo among them).
func (a *backendAuth) cleanGRPCError(err error) error {
	st, ok := status.FromError(err)
	if err == nil || !ok {
		return err
	}
	msg, changed := a.echoes.cleanText(st.Message())
	if !changed {
		return err
	}
	pb := st.Proto()
	pb.Message = msg
	return status.FromProto(pb).Err()
}

// cleanPartialSuccess replaces a credential echoed in an OTLP answer's
// partial_success.error_message, which the exporters log at warn. The answer
// is pdata's internal type (ExportTraceServiceResponse and the logs and
// metrics ones), so its exported field is reached by reflection.
func (a *backendAuth) cleanPartialSuccess(reply any) {
	v := reflect.ValueOf(reply)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return
	}
	ps := v.Elem().FieldByName("PartialSuccess")
	if ps.Kind() == reflect.Pointer {
		ps = ps.Elem()
	}
	if ps.Kind() != reflect.Struct {
		return
	}
	msg := ps.FieldByName("ErrorMessage")
	if msg.Kind() != reflect.String || !msg.CanSet() {
		return
	}
	if clean, changed := a.echoes.cleanText(msg.String()); changed {
		msg.SetString(clean)
	}
}

// RoundTripper returns bearertokenauth's round tripper, refusing plaintext
// unless insecure is set. It cleans the credential out of every answer's
// body before the exporter reads it, and classifies and reports each round
// trip's outcome.
func (a *backendAuth) RoundTripper(base http.RoundTripper) (http.RoundTripper, error) {
	rt, err := a.httpAuth.RoundTripper(&sentHeader{inner: base, header: a.cfg.header(), echoes: a.echoes})
	if err != nil {
		return nil, err
	}
	return &roundTripper{inner: rt, auth: a}, nil
}

type perRPC struct {
	inner      credentials.PerRPCCredentials
	requireTLS bool
	echoes     *echoes
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
		p.echoes.remember(v)
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
		r.auth.cleanBody(resp)
	}
	if out, ok := classifyHTTP(resp, err); ok {
		r.auth.observer.observe(out)
	}
	return resp, err
}

// maxCleanedBody is how much of an answer is cleaned: otlphttp reads at most
// 64 KiB of it.
const maxCleanedBody = 64 << 10

// cleanBody masks a credential echoed in the first maxCleanedBody bytes of
// the answer, keeping the body's length.
func (a *backendAuth) cleanBody(resp *http.Response) {
	if resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxCleanedBody))
	a.echoes.cleanBytes(head)
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
}

// sentHeader sits under bearertokenauth's round tripper and notes the header
// value it set, so that an echo of it can be cleaned from the answer.
type sentHeader struct {
	inner  http.RoundTripper
	header string
	echoes *echoes
}

func (s *sentHeader) RoundTrip(req *http.Request) (*http.Response, error) {
	s.echoes.remember(req.Header.Get(s.header))
	return s.inner.RoundTrip(req)
}
