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

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/delivery"
	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/errclass"
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

// probeMemo remembers the last probe status so "since" is when it last changed.
type probeMemo struct {
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
		view := h.scraper.collectorView()
		health := h.tracker.Evaluate(rc.Window, view.exporters, view.receiversOf)
		for _, id := range slices.Sorted(maps.Keys(health)) {
			eh := health[id]
			switch exporterProblem(eh, rc.QueueFill) {
			case probeNotDelivering:
				return probeResult{code: http.StatusServiceUnavailable, status: probeNotDelivering,
					reason: fmt.Sprintf("exporter %s delivered no spans in %s while spans arrived", id, rc.Window)}
			case probeQueueFull:
				return probeResult{code: http.StatusServiceUnavailable, status: probeQueueFull,
					reason: fmt.Sprintf("exporter %s queue is %.0f%% full (readiness.queue_fill %.0f%%)", id, eh.QueueFill()*100, rc.QueueFill*100)}
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
		h.probe = probeMemo{status: res.status, since: now}
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
	Delivering    bool       `json:"delivering"`
	Sent          int64      `json:"sent"`
	Failed        int64      `json:"failed"`
	FailedEnqueue int64      `json:"failed_enqueue"`
	Received      int64      `json:"received"`
	QueueSize     int64      `json:"queue_size"`
	QueueCapacity int64      `json:"queue_capacity"`
	LastError     string     `json:"last_error"`
	ErrorCode     string     `json:"error_code,omitempty"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
	LastDelivery  *time.Time `json:"last_delivery,omitempty"`
	Window        string     `json:"window"`
}

// deliveryJSON is the "delivery" object of /status.
type deliveryJSON struct {
	sourceState
	Window   string `json:"window"`
	ErrorLog bool   `json:"error_log"`
}

// exporterProblem is why an exporter keeps the collector from being ready
// (probe) or healthy (/status): probeNotDelivering, probeQueueFull, or "".
func exporterProblem(eh delivery.Health, maxFill float64) string {
	switch {
	case !eh.Delivering:
		return probeNotDelivering
	case eh.QueueFill() > maxFill:
		return probeQueueFull
	}
	return ""
}

// exporters is the "exporters" object of /status, and whether any of them
// has a problem (exporterProblem, with readiness.queue_fill).
func (h *healthCheck) exporters() (map[string]exporterJSON, bool) {
	window := h.cfg.Delivery.Window
	view := h.scraper.collectorView()
	health := h.tracker.Evaluate(window, view.exporters, view.receiversOf)
	out := make(map[string]exporterJSON, len(health))
	problems := false
	now := h.clock()
	for id, eh := range health {
		if exporterProblem(eh, h.cfg.Readiness.QueueFill) != "" {
			problems = true
		}
		ej := exporterJSON{
			Delivering:    eh.Delivering,
			Sent:          count(eh.Sent),
			Failed:        count(eh.Failed),
			FailedEnqueue: count(eh.FailedEnqueue),
			Received:      count(eh.Received),
			QueueSize:     count(eh.QueueSize),
			QueueCapacity: count(eh.QueueCapacity),
			Window:        window.String(),
		}
		if !eh.LastDelivery.IsZero() {
			t := eh.LastDelivery.UTC()
			ej.LastDelivery = &t
		}
		if !eh.Delivering {
			ej.LastError, ej.ErrorCode, ej.LastErrorAt = h.lastError(id, eh, now.Add(-window))
		}
		out[id] = ej
	}
	return out, problems
}

// lastError picks the best evidence for why exporter id is not delivering:
// the export error log (delivery.logs_endpoint) seen within the window, else
// the error.type split of the failed counter (metrics level detailed), else
// enqueue failures, else "no delivery (exporter retrying)".
func (h *healthCheck) lastError(id string, eh delivery.Health, notBefore time.Time) (string, string, *time.Time) {
	if e, ok := h.errors.Last(id); ok && !e.At.Before(notBefore) {
		t := e.At.UTC()
		return e.Class, e.Code, &t
	}
	if len(eh.FailedByType) > 0 {
		var best string
		for _, typ := range slices.Sorted(maps.Keys(eh.FailedByType)) {
			if best == "" || eh.FailedByType[typ] > eh.FailedByType[best] {
				best = typ
			}
		}
		class, code := errclass.FromErrorType(best)
		return class, code, nil
	}
	if eh.FailedEnqueue > 0 {
		return errclass.QueueFull, "QueueFull", nil
	}
	return errclass.NoDelivery, "", nil
}

func (h *healthCheck) serveStatus(w http.ResponseWriter, r *http.Request) {
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
	for name, raw := range h.sources.collect(r.Context()) {
		doc[name] = raw
	}
	doc["status"] = overall
	doc["components"] = comps
	doc["exporters"] = exporters
	doc["delivery"] = deliveryJSON{
		sourceState: h.scraper.state(),
		Window:      h.cfg.Delivery.Window.String(),
		ErrorLog:    h.cfg.Delivery.LogsEndpoint != "",
	}
	code := http.StatusOK
	if overall == overallUnavailable {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, doc)
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
