package healthcheckextension // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension"

import (
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/pipeline"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/redact"
)

// componentStatuses keeps the latest componentstatus event of every instance.
type componentStatuses struct {
	mu     sync.Mutex
	latest map[*componentstatus.InstanceID]*componentstatus.Event
}

func newComponentStatuses() *componentStatuses {
	return &componentStatuses{latest: map[*componentstatus.InstanceID]*componentstatus.Event{}}
}

func (c *componentStatuses) set(id *componentstatus.InstanceID, ev *componentstatus.Event) {
	if id == nil || ev == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latest[id] = ev
}

// componentJSON is one component in /status.
type componentJSON struct {
	Status string    `json:"status"`
	Since  time.Time `json:"since"`
	// Error is the reported error with anything that looks like a secret removed.
	Error string `json:"error,omitempty"`
}

// componentsJSON is the "components" object of /status.
type componentsJSON struct {
	// Pipelines maps pipeline id to "kind:id" of each component in it.
	Pipelines map[string]map[string]componentJSON `json:"pipelines"`
	// Extensions maps extension id to its status.
	Extensions map[string]componentJSON `json:"extensions"`
}

// componentsSummary is what the probe and the overall status need.
type componentsSummary struct {
	// failed lists "kind:id" of components in permanent or fatal error.
	failed []string
	// recovering lists "kind:id" of components in recoverable error.
	recovering  []string
	failedSince time.Time
}

func (c *componentStatuses) snapshot() (componentsJSON, componentsSummary) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := componentsJSON{
		Pipelines:  map[string]map[string]componentJSON{},
		Extensions: map[string]componentJSON{},
	}
	var sum componentsSummary
	for id, ev := range c.latest {
		key := strings.ToLower(id.Kind().String()) + ":" + id.ComponentID().String()
		cj := componentJSON{Status: statusName(ev.Status()), Since: ev.Timestamp()}
		if err := ev.Err(); err != nil {
			cj.Error = redact.Redact(err.Error())
		}
		switch ev.Status() {
		case componentstatus.StatusPermanentError, componentstatus.StatusFatalError:
			sum.failed = append(sum.failed, key)
			if sum.failedSince.IsZero() || ev.Timestamp().Before(sum.failedSince) {
				sum.failedSince = ev.Timestamp()
			}
		case componentstatus.StatusRecoverableError:
			sum.recovering = append(sum.recovering, key)
		}
		inPipeline := false
		id.AllPipelineIDs(func(p pipeline.ID) bool {
			inPipeline = true
			m, ok := out.Pipelines[p.String()]
			if !ok {
				m = map[string]componentJSON{}
				out.Pipelines[p.String()] = m
			}
			m[key] = cj
			return true
		})
		if !inPipeline {
			out.Extensions[id.ComponentID().String()] = cj
		}
	}
	sort.Strings(sum.failed)
	sort.Strings(sum.recovering)
	return out, sum
}

// statusName spells componentstatus.Status the way /status shows it.
func statusName(s componentstatus.Status) string {
	switch s {
	case componentstatus.StatusStarting:
		return "starting"
	case componentstatus.StatusOK:
		return "ok"
	case componentstatus.StatusRecoverableError:
		return "recoverable_error"
	case componentstatus.StatusPermanentError:
		return "permanent_error"
	case componentstatus.StatusFatalError:
		return "fatal_error"
	case componentstatus.StatusStopping:
		return "stopping"
	case componentstatus.StatusStopped:
		return "stopped"
	}
	return "none"
}
