package istiospanprocessor // import "github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor"

import (
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/processor"
	"go.uber.org/zap"

	"github.com/otelcol-istio/otelcol-istio/processor/istiospanprocessor/internal/orphans"
)

// statusSourceName is the /status key the propagation report appears under.
const statusSourceName = "propagation"

// statusRegistrar is the health_check extension's status-source contract,
// duck typed so that this module does not import the extension.
type statusRegistrar interface {
	RegisterStatusSource(name string, source func() any) (unregister func())
}

// detectors shares one orphan Detector among the processor instances built
// from the same config (the collector builds one per pipeline). One index
// then sees every pipeline's spans, so pairs split across pipelines still
// meet, and /status gets one report instead of the last pipeline's. The
// memory_limiter processor shares its instances the same way.
type detectors struct {
	mu    sync.Mutex
	byCfg map[component.Config]*sharedDetector
}

// sharedDetector is one Detector and the processor instances that use it.
type sharedDetector struct {
	owner  *detectors
	cfg    component.Config
	det    *orphans.Detector
	logger *zap.Logger

	// Guarded by owner.mu.
	users      int      // instances created and not yet shut down
	started    int      // instances started and not yet shut down
	unregister []func() // status-source registrations, while started > 0
}

func newDetectors() *detectors {
	return &detectors{byCfg: map[component.Config]*sharedDetector{}}
}

// acquire returns the shared detector for cfg, creating it on first use, or
// nil when orphan detection is disabled.
func (ds *detectors) acquire(set processor.Settings, cfg *Config) (*sharedDetector, error) {
	if !cfg.Orphans.Enabled {
		return nil, nil
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if sd, ok := ds.byCfg[cfg]; ok {
		sd.users++
		return sd, nil
	}
	det, err := orphans.NewDetector(cfg.Orphans.detectorConfig(), set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	sd := &sharedDetector{owner: ds, cfg: cfg, det: det, logger: set.Logger, users: 1}
	ds.byCfg[cfg] = sd
	return sd, nil
}

// start registers the report with every health_check-like extension when
// the first instance starts. Extensions start before pipelines, so they are
// ready to take the registration.
func (sd *sharedDetector) start(host component.Host) {
	sd.owner.mu.Lock()
	defer sd.owner.mu.Unlock()
	sd.started++
	if sd.started > 1 {
		return
	}
	report := func() any { return sd.det.Report() }
	for id, ext := range host.GetExtensions() {
		if r, ok := ext.(statusRegistrar); ok {
			sd.unregister = append(sd.unregister, r.RegisterStatusSource(statusSourceName, report))
			sd.logger.Debug("istio_span publishes its propagation report", zap.Stringer("extension", id))
		}
	}
	if len(sd.unregister) == 0 {
		sd.logger.Debug("istio_span found no health_check extension; the propagation report is not published")
	}
}

// release undoes start (when wasStarted) and acquire; the last user shuts
// the Detector down.
func (sd *sharedDetector) release(wasStarted bool) {
	sd.owner.mu.Lock()
	defer sd.owner.mu.Unlock()
	if wasStarted {
		sd.started--
		if sd.started == 0 {
			for _, u := range sd.unregister {
				u()
			}
			sd.unregister = nil
		}
	}
	sd.users--
	if sd.users == 0 {
		delete(sd.owner.byCfg, sd.cfg)
		sd.det.Shutdown()
	}
}
