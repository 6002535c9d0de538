package healthcheckextension // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/attempts"
	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/delivery"
	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/statuspage"
)

// Probe statuses, the "status" field of the probe body.
const (
	probeOK             = "ok"
	probeStarting       = "starting"
	probeShuttingDown   = "shutting_down"
	probeComponentError = "component_error"
	probeNotDelivering  = "not_delivering"
	probeQueueFull      = "queue_full"
)

// Overall statuses of /status.
const (
	overallOK          = "ok"
	overallDegraded    = "degraded"
	overallUnavailable = "unavailable"
)

// router answers the probe path and the status path; every other path is 404
// and every method but GET and HEAD is 405.
func (h *healthCheck) router() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var serve http.HandlerFunc
		switch r.URL.Path {
		case h.cfg.Path:
			serve = h.serveProbe
		case h.cfg.StatusPath:
			serve = h.serveStatus
			if statuspage.WantsHTML(r) {
				serve = statuspage.Serve
			}
		default:
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		serve(w, r)
	})
}

// statusMemo remembers the last status answered so "since" is when it last
// changed (as seen by the answers: a status that came and went between two
// requests is not seen).
type statusMemo struct {
	status string
	since  time.Time
}

// probeBody is the JSON body of the probe path.
type probeBody struct {
	Status string    `json:"status"`
	Since  time.Time `json:"since"`
	Uptime string    `json:"uptime"`
	Reason string    `json:"reason,omitempty"`
}

type probeResult struct {
	code   int
	status string
	reason string
	since  time.Time // when the cause began, if known
}

// evaluateProbe decides the probe answer. Starting, shutting down and
// permanent or fatal component errors are always 503; delivery failures only
// when readiness.on_delivery_failure is set.
func (h *healthCheck) evaluateProbe(sum componentsSummary) probeResult {
	ph, phSince, _ := h.currentPhase()
	switch ph {
	case phaseStarting:
		return probeResult{code: http.StatusServiceUnavailable, status: probeStarting, since: phSince}
	case phaseShuttingDown:
		return probeResult{code: http.StatusServiceUnavailable, status: probeShuttingDown, since: phSince}
	}
	if len(sum.failed) > 0 {
		return probeResult{code: http.StatusServiceUnavailable, status: probeComponentError,
			reason: "permanent or fatal error in " + strings.Join(sum.failed, ", "), since: sum.failedSince}
	}
	if rc := h.cfg.Readiness; rc.OnDeliveryFailure {
		now := h.clock()
		health := h.exporterHealth(rc.Window, now)
		for _, id := range slices.Sorted(maps.Keys(health)) {
			eh := health[id]
			switch {
			case !eh.delivering && (eh.lastDelivery.IsZero() || now.Sub(eh.lastDelivery) > rc.Window):
				return probeResult{code: http.StatusServiceUnavailable, status: probeNotDelivering,
					reason: fmt.Sprintf("exporter %s has not delivered in %s: %s", id, rc.Window, eh.lastError)}
			case eh.metrics.QueueFill() > rc.QueueFill:
				return probeResult{code: http.StatusServiceUnavailable, status: probeQueueFull,
					reason: fmt.Sprintf("exporter %s queue is %.0f%% full (readiness.queue_fill %.0f%%)", id, eh.metrics.QueueFill()*100, rc.QueueFill*100)}
			}
		}
	}
	return probeResult{code: http.StatusOK, status: probeOK, since: phSince}
}

func (h *healthCheck) serveProbe(w http.ResponseWriter, _ *http.Request) {
	_, sum := h.components.snapshot()
	res := h.evaluateProbe(sum)
	if rb := h.cfg.ResponseBody; rb != nil {
		// contrib's response_body: fixed text, no JSON.
		body := rb.Healthy
		if res.code != http.StatusOK {
			body = rb.Unhealthy
		}
		w.WriteHeader(res.code)
		_, _ = w.Write([]byte(body))
		return
	}
	now := h.clock()
	_, _, started := h.currentPhase()
	h.mu.Lock()
	if h.probe.status != res.status {
		h.probe = statusMemo{status: res.status, since: now}
		if !res.since.IsZero() {
			h.probe.since = res.since
		}
	}
	since := h.probe.since
	h.mu.Unlock()
	writeJSON(w, res.code, probeBody{
		Status: res.status,
		Since:  since.UTC(),
		Uptime: now.Sub(started).Round(time.Millisecond).String(),
		Reason: res.reason,
	})
}

// exporterJSON is one exporter in /status "exporters".
type exporterJSON struct {
	Status         string     `json:"status"`
	Cause          string     `json:"cause,omitempty"`
	Delivering     bool       `json:"delivering"`
	Attempts       int64      `json:"attempts"`
	FailedAttempts int64      `json:"failed_attempts"`
	LastError      string     `json:"last_error"`
	ErrorCode      string     `json:"error_code,omitempty"`
	LastErrorAt    *time.Time `json:"last_error_at,omitempty"`
	LastDelivery   *time.Time `json:"last_delivery,omitempty"`
	Observer       string     `json:"observer,omitempty"`
	Sent           int64      `json:"sent"`
	Failed         int64      `json:"failed"`
	FailedEnqueue  int64      `json:"failed_enqueue"`
	Received       int64      `json:"received"`
	QueueSize      int64      `json:"queue_size"`
	QueueCapacity  int64      `json:"queue_capacity"`
	Window         string     `json:"window"`
}

// deliveryJSON is the "delivery" object of /status.
type deliveryJSON struct {
	sourceState
	Window string `json:"window"`
}

// exporterHealth is one exporter's delivery: attempts (from backend_auth)
// and figures scraped from the collector's own metrics.
type exporterHealth struct {
	observer     string // the backend_auth instance that reported its attempts, if any
	attempts     attempts.Summary
	metrics      delivery.Health
	delivering   bool
	lastDelivery time.Time
	lastError    string
}

// exporterHealth judges every traces exporter over window ending at now.
// Attempts decide delivering and the error; an exporter no backend_auth
// reports on falls back to the metrics ("spans arrived, none sent").
func (h *healthCheck) exporterHealth(window time.Duration, now time.Time) map[string]exporterHealth {
	view := h.scraper.collectorView()
	metrics := h.tracker.Evaluate(window, view.exporters, view.receiversOf)
	out := make(map[string]exporterHealth, len(metrics))
	for id, m := range metrics {
		eh := exporterHealth{metrics: m, delivering: m.Delivering, lastDelivery: m.LastDelivery}
		// The first extension the exporter names that has reported attempts
		// (backend_auth); others (another authenticator) never report.
		for _, obs := range view.observers[id] {
			if sum := h.attempts.Summary(obs, now, window); sum.Seen {
				eh.observer, eh.attempts = obs, sum
				break
			}
		}
		switch {
		case eh.attempts.Seen:
			eh.delivering, eh.lastDelivery, eh.lastError = eh.attempts.Delivering, eh.attempts.LastSuccess, eh.attempts.LastError
		case !m.Delivering:
			eh.lastError = noDelivery
		}
		out[id] = eh
	}
	return out
}

// Causes of an exporter's degraded status, in the order they are checked.
const (
	noDelivery         = "no delivery (exporter retrying)"
	causeNotDelivering = "latest export attempt failed"
	causeQueueFull     = "sending queue full: new spans are refused"
	causeQueueStorage  = "queue storage refused writes (file_storage volume full or unwritable): new spans are refused"
	causeDropped       = "spans dropped (permanent error or retries exhausted)"
	causeAttempts      = "export attempts failed"
	causeQueueFill     = "queue above readiness.queue_fill"
)

// queueFullFill is the fill above which enqueue failures are put down to a
// full queue; below it, to the queue's storage (a full volume). A request
// larger than the space left is refused before the queue is at capacity, so
// the line is not at 100%.
const queueFullFill = 0.5

// cause says why an exporter is degraded: every reason that holds, joined
// by "; ", or "" when it is not degraded.
func cause(eh exporterHealth, maxFill float64) string {
	m := eh.metrics
	var causes []string
	if !eh.delivering {
		causes = append(causes, causeNotDelivering)
	}
	switch {
	case m.FailedEnqueue > 0 && m.HasQueue && m.QueueFill() >= queueFullFill:
		causes = append(causes, causeQueueFull)
	case m.FailedEnqueue > 0:
		causes = append(causes, causeQueueStorage)
	case m.QueueFill() > maxFill:
		causes = append(causes, causeQueueFill)
	}
	if m.Failed > 0 {
		causes = append(causes, causeDropped)
	}
	if eh.attempts.Failed > 0 && eh.delivering {
		causes = append(causes, causeAttempts)
	}
	return strings.Join(causes, "; ")
}

// exporters is the "exporters" object of /status, and whether any of them
// is degraded.
func (h *healthCheck) exporters() (map[string]exporterJSON, bool) {
	window := h.cfg.Delivery.Window
	health := h.exporterHealth(window, h.clock())
	out := make(map[string]exporterJSON, len(health))
	problems := false
	for id, eh := range health {
		m := eh.metrics
		ej := exporterJSON{
			Status:         overallOK,
			Cause:          cause(eh, h.cfg.Readiness.QueueFill),
			Delivering:     eh.delivering,
			Attempts:       eh.attempts.OK + eh.attempts.Failed,
			FailedAttempts: eh.attempts.Failed,
			LastError:      eh.lastError,
			ErrorCode:      eh.attempts.ErrorCode,
			Observer:       eh.observer,
			Sent:           count(m.Sent),
			Failed:         count(m.Failed),
			FailedEnqueue:  count(m.FailedEnqueue),
			Received:       count(m.Received),
			QueueSize:      count(m.QueueSize),
			QueueCapacity:  count(m.QueueCapacity),
			Window:         window.String(),
		}
		if ej.Cause != "" {
			ej.Status, problems = overallDegraded, true
		}
		if !eh.lastDelivery.IsZero() {
			t := eh.lastDelivery.UTC()
			ej.LastDelivery = &t
		}
		if !eh.attempts.LastErrorAt.IsZero() {
			t := eh.attempts.LastErrorAt.UTC()
			ej.LastErrorAt = &t
		}
		out[id] = ej
	}
	return out, problems
}

func (h *healthCheck) serveStatus(w http.ResponseWriter, _ *http.Request) {
	comps, sum := h.components.snapshot()
	probe := h.evaluateProbe(sum)
	exporters, exporterProblems := h.exporters()

	overall := overallOK
	switch {
	case probe.status == probeStarting || probe.status == probeShuttingDown || len(sum.failed) > 0:
		overall = overallUnavailable
	case probe.code != http.StatusOK || len(sum.recovering) > 0:
		overall = overallDegraded
	case exporterProblems:
		overall = overallDegraded
	}

	// Registered sources first, so the extension's own keys always win.
	doc := map[string]any{}
	for name, raw := range h.sources.collect() {
		doc[name] = raw
	}
	doc["status"] = overall
	doc["since"] = h.overallSince(overall)
	doc["components"] = comps
	doc["exporters"] = exporters
	doc["delivery"] = deliveryJSON{
		sourceState: h.scraper.state(),
		Window:      h.cfg.Delivery.Window.String(),
	}
	code := http.StatusOK
	if overall == overallUnavailable {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, doc)
}

// overallSince returns when /status began answering overall, in UTC.
func (h *healthCheck) overallSince(overall string) time.Time {
	now := h.clock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.overall.status != overall {
		h.overall = statusMemo{status: overall, since: now}
	}
	return h.overall.since.UTC()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, "cannot encode status", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func count(v float64) int64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return int64(math.Round(v))
}
