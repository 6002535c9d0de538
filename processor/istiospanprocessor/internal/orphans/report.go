package orphans

import (
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MaxServices caps the distinct service names in the propagation report and
// in the istio.service metric attribute. Names beyond it are added up under
// OtherService, so a mesh with many services (or garbage names) cannot grow
// the report or the metric series without bound.
const MaxServices = 500

// OtherService is the bucket for services beyond MaxServices.
const OtherService = "_other"

// unknownService names spans whose resource has no service.name.
const unknownService = "unknown_service"

// Diagnoses in the propagation report.
const (
	DiagnosisRequestIDOnly = "forwards x-request-id but not traceparent (B3-only or no W3C propagation?)"
	DiagnosisNoHeaders     = "forwards no trace headers"
	// DiagnosisNoTraceparent is used when link_by_request_id is off, so
	// x-request-id continuity was not looked at.
	DiagnosisNoTraceparent = "does not forward traceparent (x-request-id not checked: link_by_request_id is off)"
	// DiagnosisNone: outbound spans seen, none of them an orphaned root.
	DiagnosisNone = "no orphaned roots"
)

// ServiceReport is one line of the propagation report, as /status shows it.
type ServiceReport struct {
	Service     string    `json:"service"`
	Outbound    int64     `json:"outbound"`
	Orphans     int64     `json:"orphans"`
	OrphanRatio float64   `json:"orphan_ratio"`
	Relinked    int64     `json:"relinked"`
	LastSeen    time.Time `json:"last_seen"`
	Diagnosis   string    `json:"diagnosis"`
}

// serviceStats are one service's counters since the detector started.
type serviceStats struct {
	name     string
	attrs    []metric.AddOption // istio.service=name, built once: passing it with ... does not allocate
	outbound atomic.Int64
	orphans  atomic.Int64
	relinked atomic.Int64
	lastSeen atomic.Int64 // unix ns
}

func newServiceStats(name string) *serviceStats {
	return &serviceStats{
		name:  name,
		attrs: []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrService, name)))},
	}
}

func (s *serviceStats) seen(now time.Time) {
	s.lastSeen.Store(now.UnixNano())
}

// serviceRegistry maps normalised service names to their stats, up to
// MaxServices names plus the _other bucket.
type serviceRegistry struct {
	mu    sync.RWMutex
	max   int
	byKey map[string]*serviceStats
	other *serviceStats
}

func newServiceRegistry(maxServices int) *serviceRegistry {
	return &serviceRegistry{
		max:   maxServices,
		byKey: make(map[string]*serviceStats),
		other: newServiceStats(OtherService),
	}
}

func (r *serviceRegistry) get(name string) *serviceStats {
	if name == "" {
		name = unknownService
	}
	r.mu.RLock()
	s, ok := r.byKey[name]
	r.mu.RUnlock()
	if ok {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok = r.byKey[name]; ok {
		return s
	}
	if len(r.byKey) >= r.max {
		return r.other
	}
	// Clone: name may point into pdata that goes downstream.
	s = newServiceStats(strings.Clone(name))
	r.byKey[s.name] = s
	return s
}

func (r *serviceRegistry) snapshot(linkEnabled bool) []ServiceReport {
	r.mu.RLock()
	all := make([]*serviceStats, 0, len(r.byKey)+1)
	for _, s := range r.byKey {
		all = append(all, s)
	}
	r.mu.RUnlock()
	all = append(all, r.other)

	out := make([]ServiceReport, 0, len(all))
	for _, s := range all {
		sr := ServiceReport{
			Service:  s.name,
			Outbound: s.outbound.Load(),
			Orphans:  s.orphans.Load(),
			Relinked: s.relinked.Load(),
		}
		last := s.lastSeen.Load()
		if s == r.other && last == 0 {
			continue // empty overflow bucket
		}
		if last != 0 {
			sr.LastSeen = time.Unix(0, last).UTC()
		}
		if sr.Outbound > 0 {
			sr.OrphanRatio = math.Round(float64(sr.Orphans)/float64(sr.Outbound)*1e4) / 1e4
		}
		sr.Diagnosis = diagnose(sr, linkEnabled)
		out = append(out, sr)
	}
	// Culprits first, then by name, so the report reads top-down and is stable.
	sort.Slice(out, func(i, j int) bool {
		if out[i].Orphans != out[j].Orphans {
			return out[i].Orphans > out[j].Orphans
		}
		return out[i].Service < out[j].Service
	})
	return out
}

// diagnose turns a service's counts into one line. A re-linked pair proves
// x-request-id continuity across the break; orphans without one mean the app
// forwarded neither header (or the pair's other half has not arrived yet).
func diagnose(sr ServiceReport, linkEnabled bool) string {
	switch {
	case sr.Orphans == 0:
		return DiagnosisNone
	case sr.Relinked > 0:
		return DiagnosisRequestIDOnly
	case !linkEnabled:
		return DiagnosisNoTraceparent
	default:
		return DiagnosisNoHeaders
	}
}
