package healthcheckextension // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension"

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/extensioncapabilities"
	"go.uber.org/zap"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/attempts"
	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/delivery"
)

// phase is where the collector is in its lifecycle, as the extension sees it.
type phase int

const (
	phaseStarting phase = iota
	phaseReady
	phaseShuttingDown
)

// healthCheck is the health_check extension.
type healthCheck struct {
	cfg    *Config
	set    extension.Settings
	logger *zap.Logger

	// clock is replaced in tests.
	clock func() time.Time

	mu         sync.Mutex
	phase      phase
	phaseSince time.Time
	startedAt  time.Time
	probe      statusMemo // the probe path's answer
	overall    statusMemo // /status's overall status

	components *componentStatuses
	sources    *statusSources
	tracker    *delivery.Tracker
	attempts   *attempts.Store
	scraper    *scrapeLoop

	server     *http.Server
	serverDone chan struct{}
	addr       net.Addr // where the probe listener is bound
}

var (
	_ extension.Extension                         = (*healthCheck)(nil)
	_ extensioncapabilities.PipelineWatcher       = (*healthCheck)(nil)
	_ extensioncapabilities.ConfigSnapshotWatcher = (*healthCheck)(nil)
	// The collector v0.165 delivers status events through this interface
	// (componentstatus.Watcher is deprecated and no longer called).
	_ extensioncapabilities.ComponentStatusWatcher = (*healthCheck)(nil)
)

func newHealthCheck(cfg *Config, set extension.Settings) *healthCheck {
	now := time.Now
	keep := max(cfg.Delivery.Window, cfg.Readiness.Window) + 2*cfg.Delivery.ScrapeInterval
	h := &healthCheck{
		cfg:        cfg,
		set:        set,
		logger:     set.Logger,
		clock:      now,
		phase:      phaseStarting,
		phaseSince: now(),
		components: newComponentStatuses(),
		sources:    newStatusSources(set.Logger),
		tracker:    delivery.NewTracker(keep),
		attempts:   attempts.NewStore(max(cfg.Delivery.Window, cfg.Readiness.Window)),
	}
	h.scraper = newScrapeLoop(cfg.Delivery, h.tracker, set.Logger)
	return h
}

// Start opens the probe listener and starts reading the collector's own
// metrics.
func (h *healthCheck) Start(ctx context.Context, host component.Host) error {
	if p := h.cfg.CheckCollectorPipeline; p != nil && p.Enabled {
		h.logger.Warn("check_collector_pipeline is deprecated and ignored, as in contrib; " +
			"use readiness.on_delivery_failure to fail the probe when spans are not delivered")
	}
	if h.cfg.Delivery.LogsEndpoint != "" {
		h.logger.Warn("health_check: delivery.logs_endpoint is ignored: error classes now come from backend_auth, " +
			"which sees every export attempt; remove it and the service::telemetry::logs::processors block that fed it")
	}
	h.mu.Lock()
	h.startedAt = h.clock()
	h.mu.Unlock()

	ln, err := h.cfg.ServerConfig.ToListener(ctx)
	if err != nil {
		return fmt.Errorf("health_check: listening on endpoint %q: %w", h.cfg.ServerConfig.NetAddr.Endpoint, err)
	}
	srv, err := h.cfg.ServerConfig.ToServer(ctx, host.GetExtensions(), h.set.TelemetrySettings, h.router())
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("health_check: building HTTP server: %w", err)
	}
	h.server, h.serverDone, h.addr = srv, make(chan struct{}), ln.Addr()
	go serve(srv, ln, h.serverDone, host)

	h.tracker.Seed(h.clock())
	h.scraper.start() //nolint:contextcheck // the scrape loop outlives Start; Shutdown ends it
	return nil
}

func serve(srv *http.Server, ln net.Listener, done chan struct{}, host component.Host) {
	defer close(done)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		componentstatus.ReportStatus(host, componentstatus.NewFatalErrorEvent(err))
	}
}

// Shutdown stops reading metrics and closes the listeners. NotReady has
// already turned the probe to 503, so probes see 503 until the listener closes.
func (h *healthCheck) Shutdown(ctx context.Context) error {
	h.setPhase(phaseShuttingDown)
	h.scraper.stop()
	var errs []error
	if h.server != nil {
		if err := h.server.Shutdown(ctx); err != nil {
			errs = append(errs, err, h.server.Close())
		}
		<-h.serverDone
	}
	return errors.Join(errs...)
}

// Ready is called once all pipelines have started.
func (h *healthCheck) Ready() error {
	h.setPhase(phaseReady)
	h.scraper.ready()
	return nil
}

// NotReady is called before the receivers stop; the probe answers 503 from now on.
func (h *healthCheck) NotReady() error {
	h.setPhase(phaseShuttingDown)
	return nil
}

// Changed records a component's status (extensioncapabilities.
// ComponentStatusWatcher). It only takes a short lock, because the collector
// calls it on the reporting component's goroutine.
func (h *healthCheck) Changed(source *componentstatus.InstanceID, event *componentstatus.Event) {
	h.components.set(source, event)
}

// NotifyConfigSnapshot learns the pipelines and the collector's metrics
// endpoint from the effective configuration.
func (h *healthCheck) NotifyConfigSnapshot(_ context.Context, snapshot extensioncapabilities.ConfigSnapshot) error {
	view := parseCollectorConfig(snapshot.Effective())
	h.scraper.setCollectorView(view)
	for obs, exps := range view.sharedObservers() {
		h.logger.Warn("health_check: one backend_auth instance serves several exporters, so their attempts are shown together; "+
			"give each exporter its own backend_auth instance (backend_auth/<name>)",
			zap.String("backend_auth", obs), zap.Strings("exporters", exps))
	}
	if view.metricsErr != nil && h.cfg.Delivery.TelemetryEndpoint == "" {
		h.logger.Warn("health_check cannot read delivery figures; set delivery.telemetry_endpoint",
			zap.Error(view.metricsErr))
	}
	return nil
}

// RecordExportAttempt is called by backend_auth (its AttemptRecorder
// interface) after every export attempt of the exporter it serves, with the
// attempt's class ("" for a success) and code. It only takes a short lock.
func (h *healthCheck) RecordExportAttempt(observer component.ID, at time.Time, class, code string) {
	h.attempts.Record(observer.String(), at, class, code)
}

// RegisterStatusSource publishes source() under the top-level key name of
// /status until unregister is called. It is safe for concurrent use; a source
// that panics is reported as an error, never breaks /status.
func (h *healthCheck) RegisterStatusSource(name string, source func() any) (unregister func()) {
	return h.sources.register(name, source)
}

func (h *healthCheck) setPhase(p phase) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.phase == p || (h.phase == phaseShuttingDown && p != phaseShuttingDown) {
		return
	}
	h.phase = p
	h.phaseSince = h.clock()
}

func (h *healthCheck) currentPhase() (phase, time.Time, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.phase, h.phaseSince, h.startedAt
}
