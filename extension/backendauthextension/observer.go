package backendauthextension // import "github.com/otelcol-istio/otelcol-istio/extension/backendauthextension"

import (
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.uber.org/zap"
)

// AttemptRecorder is implemented by extensions that want every export
// attempt's outcome, such as health_check. backend_auth finds them among the
// host's extensions at Start; the interface has only standard types so that
// neither module imports the other. class is empty for a success; otherwise
// it is one of the Class* constants and code its typed cause.
type AttemptRecorder interface {
	RecordExportAttempt(observer component.ID, at time.Time, class, code string)
}

// attemptObserver turns each export attempt's outcome into what others see:
// records for AttemptRecorders, componentstatus events on backend_auth's own
// instance (recoverable error with the class, OK again on success), and a
// log line when credentials are rejected or an export is too large, once per
// episode rather than once per batch.
type attemptObserver struct {
	id     component.ID
	logger *zap.Logger
	now    func() time.Time

	mu        sync.Mutex
	host      component.Host
	recorders []AttemptRecorder
	last      outcome // of the latest attempt
	attempted bool
	// credentialsLogged is set from the credentials log line until an
	// export succeeds, so that a rejected token is logged once per episode.
	credentialsLogged bool
	// tooLargeLogged is when the last "too large" line was written: at
	// most one per tooLargeLogEvery, as large batches may keep failing
	// between successful small ones.
	tooLargeLogged time.Time
}

const tooLargeLogEvery = time.Minute

func newAttemptObserver(id component.ID, logger *zap.Logger) *attemptObserver {
	return &attemptObserver{id: id, logger: logger, now: time.Now}
}

// start learns where to report: the host (componentstatus) and the
// AttemptRecorders among its extensions.
func (o *attemptObserver) start(host component.Host) {
	var recorders []AttemptRecorder
	for _, ext := range host.GetExtensions() {
		if r, ok := ext.(AttemptRecorder); ok {
			recorders = append(recorders, r)
		}
	}
	o.mu.Lock()
	o.host, o.recorders = host, recorders
	o.mu.Unlock()
}

// observe records one attempt. It holds the lock while reporting so that
// status events and records keep the attempts' order; reports are in-memory
// and short.
func (o *attemptObserver) observe(out outcome) {
	at := o.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range o.recorders {
		r.RecordExportAttempt(o.id, at, out.class, out.code)
	}
	changed := !o.attempted || out != o.last
	o.attempted, o.last = true, out
	o.log(out, at)
	if !changed || o.host == nil {
		return
	}
	if out.ok() {
		componentstatus.ReportStatus(o.host, componentstatus.NewEvent(componentstatus.StatusOK))
		return
	}
	componentstatus.ReportStatus(o.host, componentstatus.NewRecoverableErrorEvent(errors.New(out.String())))
}

// log writes the episode log lines. The backend's own message is never
// logged: some backends echo the credential they refused.
func (o *attemptObserver) log(out outcome, at time.Time) {
	switch {
	case out.ok():
		if o.credentialsLogged {
			o.logger.Info("backend accepts credentials again")
		}
		o.credentialsLogged = false
	case out.class == ClassCredentials && !o.credentialsLogged:
		o.logger.Error("backend rejected credentials: exports are dropped, not retried, until the token is fixed; "+
			"check OTLP_BACKEND_TOKEN or OTLP_BACKEND_TOKEN_FILE, OTLP_BACKEND_AUTH_HEADER and OTLP_BACKEND_AUTH_SCHEME",
			zap.String("code", out.code))
		o.credentialsLogged = true
	case out.tooLarge && (o.tooLargeLogged.IsZero() || at.Sub(o.tooLargeLogged) >= tooLargeLogEvery):
		o.logger.Error("backend rejected an export as too large: its spans are dropped; "+
			"lower OTLP_BACKEND_MAX_REQUEST_BYTES below the backend's request size limit",
			zap.String("code", out.code))
		o.tooLargeLogged = at
	}
}
