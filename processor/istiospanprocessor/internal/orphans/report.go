package orphans

import (
	"math"
	"net/netip"
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

// ServiceIdle is how long a listed name must have gone unseen before a new
// name may take its slot once MaxServices names are listed. A flood of junk
// names therefore holds the slots for at most ServiceIdle after its last
// name, and can never push out a service that keeps sending.
const ServiceIdle = time.Minute

// Each listed name is charged to the sender (peer IP) whose span listed it.
// Once the registry is full, a sender holding at least two slots fewer than
// the largest holder takes that holder's least recently seen slot at once,
// so one sender re-sending made-up names can hold the slots only while no
// other sender wants one (max-min fairness: the peer address, unlike
// anything in the payload, cannot be forged per span).

// OtherService is the bucket for services beyond MaxServices, and for the
// counts of names that gave up their slot.
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

// serviceStats are one service's counters since it was listed.
type serviceStats struct {
	name     string
	owner    netip.Addr             // the sender whose span listed it
	attrs    []metric.ObserveOption // istio.service=name, built once
	outbound atomic.Int64
	orphans  atomic.Int64
	relinked atomic.Int64
	lastSeen atomic.Int64 // unix ns
}

func newServiceStats(name string) *serviceStats {
	return &serviceStats{
		name:  name,
		attrs: []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrService, name)))},
	}
}

func (s *serviceStats) count(now, outbound, orphans, relinked int64) {
	if outbound != 0 {
		s.outbound.Add(outbound)
	}
	if orphans != 0 {
		s.orphans.Add(orphans)
	}
	if relinked != 0 {
		s.relinked.Add(relinked)
	}
	// Batches run concurrently: keep the latest time, never step back.
	for {
		last := s.lastSeen.Load()
		if now <= last || s.lastSeen.CompareAndSwap(last, now) {
			return
		}
	}
}

// fold adds an evicted entry's counts to s (the _other bucket), so that the
// totals over all lines stay what they were.
func (s *serviceStats) fold(from *serviceStats) {
	s.count(from.lastSeen.Load(), from.outbound.Load(), from.orphans.Load(), from.relinked.Load())
}

// serviceRegistry maps normalised service names to their stats, up to
// MaxServices names plus the _other bucket. Once full, a new name takes the
// slot of the least recently seen name if that one has been idle for
// ServiceIdle, else the least recently seen slot of the sender holding the
// most if its own sender holds at least two fewer (the evicted counts move to
// _other); otherwise it counts under _other.
//
// Counting holds the read lock, eviction the write lock, so no count lands
// on an entry after its counts were folded into _other.
type serviceRegistry struct {
	mu    sync.RWMutex
	max   int
	idle  int64 // ns
	byKey map[string]*serviceStats
	other *serviceStats
	// held counts the listed names charged to each sender; maxHeld is its
	// largest value, so a sender that may not take a slot from another is
	// told so under the read lock.
	held    map[netip.Addr]int
	maxHeld int
	// oldest is at most the smallest lastSeen in byKey (lastSeen only grows,
	// new entries start at now), as of the last scan: while
	// now < oldest+idle no entry can be idle, and a new name goes to _other
	// without scanning, so a flood costs O(1) per name.
	oldest int64
}

func newServiceRegistry(maxServices int, idle time.Duration) *serviceRegistry {
	return &serviceRegistry{
		max:   maxServices,
		idle:  int64(idle),
		byKey: make(map[string]*serviceStats),
		other: newServiceStats(OtherService),
		held:  make(map[netip.Addr]int),
	}
}

// add counts outbound spans, orphans and re-linked pairs for name, seen at
// now (unix ns) in a batch from sender.
func (r *serviceRegistry) add(sender netip.Addr, name string, now, outbound, orphans, relinked int64) {
	if name == "" {
		name = unknownService
	}
	r.mu.RLock()
	s, ok := r.byKey[name]
	if !ok && len(r.byKey) >= r.max && now < r.oldest+r.idle && !r.mayTake(sender) {
		// Full, no slot can be idle and sender may take none: no write lock.
		s, ok = r.other, true
	}
	if ok {
		s.count(now, outbound, orphans, relinked)
		r.mu.RUnlock()
		return
	}
	r.mu.RUnlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.slot(sender, name, now).count(now, outbound, orphans, relinked)
}

// mayTake reports whether sender holds at least two slots fewer than the
// largest holder, so that taking one of that holder's slots cannot make the
// two trade slots back and forth. r.mu must be held.
func (r *serviceRegistry) mayTake(sender netip.Addr) bool {
	return r.held[sender] < r.maxHeld-1
}

// slot returns name's entry, listing it for sender if there is room, an idle
// slot or a slot sender may take from the largest holder, else _other. r.mu
// must be held for writing.
func (r *serviceRegistry) slot(sender netip.Addr, name string, now int64) *serviceStats {
	if s, ok := r.byKey[name]; ok {
		return s
	}
	if len(r.byKey) >= r.max {
		freed := (now >= r.oldest+r.idle && r.evictIdle(now)) ||
			(r.mayTake(sender) && r.evictFromLargest())
		if !freed {
			return r.other
		}
	}
	// Clone: name may point into pdata that goes downstream.
	s := newServiceStats(strings.Clone(name))
	s.owner = sender
	s.lastSeen.Store(now)
	r.byKey[s.name] = s
	r.charge(sender, 1)
	if len(r.byKey) == 1 || now < r.oldest {
		r.oldest = now
	}
	return s
}

// evictIdle removes the least recently seen entry if it has been idle for
// r.idle, folding its counts into _other, and refreshes r.oldest. One pass
// over at most r.max entries, only when the bound says one may be idle.
func (r *serviceRegistry) evictIdle(now int64) bool {
	var victim *serviceStats
	first, second := int64(math.MaxInt64), int64(math.MaxInt64)
	for _, s := range r.byKey {
		last := s.lastSeen.Load()
		switch {
		case last < first:
			victim, first, second = s, last, first
		case last < second:
			second = last
		}
	}
	if victim == nil || now-first < r.idle {
		r.oldest = first
		return false
	}
	r.evict(victim)
	r.oldest = min(second, now)
	return true
}

// evictFromLargest removes the least recently seen entry of the sender
// holding the most entries. It leaves r.oldest a valid lower bound: removing
// an entry can only raise the smallest lastSeen. One pass over the senders
// and one over at most r.max entries.
func (r *serviceRegistry) evictFromLargest() bool {
	var largest netip.Addr
	n := 0
	for sender, held := range r.held {
		if held > n {
			largest, n = sender, held
		}
	}
	var victim *serviceStats
	first := int64(math.MaxInt64)
	for _, s := range r.byKey {
		if last := s.lastSeen.Load(); s.owner == largest && last < first {
			victim, first = s, last
		}
	}
	if victim == nil {
		return false
	}
	r.evict(victim)
	return true
}

// evict removes s, folding its counts into _other. r.mu must be held for
// writing.
func (r *serviceRegistry) evict(s *serviceStats) {
	delete(r.byKey, s.name)
	r.other.fold(s)
	r.charge(s.owner, -1)
}

// charge changes sender's count of listed names by delta and refreshes
// r.maxHeld (one pass over the senders, at most r.max of them).
func (r *serviceRegistry) charge(sender netip.Addr, delta int) {
	if n := r.held[sender] + delta; n > 0 {
		r.held[sender] = n
	} else {
		delete(r.held, sender)
	}
	r.maxHeld = 0
	for _, n := range r.held {
		r.maxHeld = max(r.maxHeld, n)
	}
}

// observe reports one counter of every listed name (and _other), read by
// value, to a metric callback. Names that gave up their slot are no longer
// observed, so the exported series follow the registry: at most
// MaxServices+1 names at any time. Zero counts are not reported.
func (r *serviceRegistry) observe(o metric.Int64Observer, value func(*serviceStats) int64) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.byKey {
		if n := value(s); n > 0 {
			o.Observe(n, s.attrs...)
		}
	}
	if n := value(r.other); n > 0 {
		o.Observe(n, r.other.attrs...)
	}
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
