package backendauthextension // import "github.com/otelcol-istio/otelcol-istio/extension/backendauthextension"

import (
	"net/http"
	"sync/atomic"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rejectionLog logs "backend rejected credentials" once when the backend
// starts refusing the token, and once more when it accepts it again, instead
// of once per failed batch. The backend's own message is not logged: some
// backends echo the credential they refused.
//
// The exporters already treat 401/403 and Unauthenticated/PermissionDenied
// as permanent errors: the batch is dropped (and counted in
// otelcol_exporter_send_failed_spans), never retried.
type rejectionLog struct {
	logger   *zap.Logger
	rejected atomic.Bool
}

func newRejectionLog(logger *zap.Logger) *rejectionLog { return &rejectionLog{logger: logger} }

func (r *rejectionLog) observeGRPC(err error) {
	switch code := status.Code(err); code {
	case codes.OK:
		r.accepted()
	case codes.Unauthenticated, codes.PermissionDenied:
		r.reject(zap.String("grpc_code", code.String()))
	}
}

func (r *rejectionLog) observeHTTP(statusCode int) {
	switch {
	case statusCode == http.StatusUnauthorized || statusCode == http.StatusForbidden:
		r.reject(zap.Int("http_status", statusCode))
	case statusCode >= 200 && statusCode < 300:
		r.accepted()
	}
}

func (r *rejectionLog) reject(field zap.Field) {
	if r.rejected.CompareAndSwap(false, true) {
		r.logger.Error("backend rejected credentials: exports are dropped, not retried, until the token is fixed; "+
			"check OTLP_BACKEND_TOKEN or OTLP_BACKEND_TOKEN_FILE, OTLP_BACKEND_AUTH_HEADER and OTLP_BACKEND_AUTH_SCHEME",
			field)
	}
}

func (r *rejectionLog) accepted() {
	if r.rejected.CompareAndSwap(true, false) {
		r.logger.Info("backend accepts credentials again")
	}
}
