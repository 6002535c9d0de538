package healthcheckextension // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension"

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/delivery"
	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/redact"
	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/selfmetrics"
)

// maxScrapeTimeout bounds one scrape even with a long scrape_interval.
const maxScrapeTimeout = 5 * time.Second

// scrapeLoop reads the collector's own metrics every scrape_interval on its own
// goroutine, so neither probes nor the pipeline ever wait for a scrape.
type scrapeLoop struct {
	cfg     DeliveryConfig
	tracker *delivery.Tracker
	logger  *zap.Logger
	client  *http.Client

	mu        sync.Mutex
	view      collectorView
	haveView  bool
	isReady   bool
	lastErr   string
	lastOK    time.Time
	lastURL   string
	cancel    context.CancelFunc
	done      chan struct{}
	startOnce sync.Once
}

func newScrapeLoop(cfg DeliveryConfig, tracker *delivery.Tracker, logger *zap.Logger) *scrapeLoop {
	return &scrapeLoop{
		cfg:     cfg,
		tracker: tracker,
		logger:  logger,
		client:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute}},
	}
}

func (s *scrapeLoop) start() {
	s.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.mu.Lock()
		s.cancel, s.done = cancel, make(chan struct{})
		s.mu.Unlock()
		go s.run(ctx)
	})
}

func (s *scrapeLoop) stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	s.client.CloseIdleConnections()
}

func (s *scrapeLoop) ready() {
	s.mu.Lock()
	s.isReady = true
	s.mu.Unlock()
}

func (s *scrapeLoop) setCollectorView(v collectorView) {
	s.mu.Lock()
	s.view, s.haveView = v, true
	s.mu.Unlock()
}

// target returns the URL to scrape, or "" while it is not known yet: the
// derived URL needs the config snapshot, which arrives after Start; without a
// snapshot by Ready, the collector's default endpoint is assumed.
func (s *scrapeLoop) target() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.targetLocked(); t != "" || s.haveView || !s.isReady {
		return t
	}
	return defaultMetricsURL
}

func (s *scrapeLoop) collectorView() collectorView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view
}

func (s *scrapeLoop) run(ctx context.Context) {
	defer close(s.done)
	ticker := time.NewTicker(s.cfg.ScrapeInterval)
	defer ticker.Stop()
	for {
		s.scrapeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (s *scrapeLoop) scrapeOnce(ctx context.Context) {
	url := s.target()
	if url == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, min(s.cfg.ScrapeInterval, maxScrapeTimeout))
	defer cancel()
	snap, err := selfmetrics.Scraper{Client: s.client}.Scrape(ctx, url)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastURL = url
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return // stopping
		}
		msg := redact.Redact(err.Error())
		if msg != s.lastErr {
			s.logger.Warn("health_check cannot read the collector's own metrics", zap.String("url", redact.Redact(url)), zap.String("error", msg))
		}
		s.lastErr = msg
		return
	}
	s.lastErr = ""
	s.lastOK = snap.At
	s.tracker.Add(snap)
}

// sourceState is the "delivery" object of /status.
type sourceState struct {
	Source    string     `json:"source"`
	ScrapedAt *time.Time `json:"scraped_at,omitempty"`
	Error     string     `json:"error,omitempty"`
}

func (s *scrapeLoop) state() sourceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := sourceState{Source: redact.Redact(s.lastURL), Error: s.lastErr}
	if st.Source == "" {
		st.Source = redact.Redact(s.targetLocked())
	}
	if !s.lastOK.IsZero() {
		t := s.lastOK
		st.ScrapedAt = &t
	}
	if s.haveView && s.view.metricsErr != nil && s.cfg.TelemetryEndpoint == "" {
		st.Error = s.view.metricsErr.Error()
	}
	return st
}

func (s *scrapeLoop) targetLocked() string {
	if s.cfg.TelemetryEndpoint != "" {
		return s.cfg.TelemetryEndpoint
	}
	if s.haveView {
		return s.view.metricsURL
	}
	return ""
}
