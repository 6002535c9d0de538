package orphans

import (
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// maxRecordsPerRequestID bounds the spans remembered under one request id.
// With forwarding apps every hop of a request shares the id, so Bookinfo's
// full chain gives 4 SERVER spans plus the orphans; spans beyond the bound
// are still flagged and can still carry links, they are just not remembered.
// Entries are fixed-size, so it also sets the index's memory per request id.
const maxRecordsPerRequestID = 6

// requestKey is a 64-bit seeded hash of a guid:x-request-id value: fixed
// size, so the index holds no strings that would pin pdata memory. With
// 100000 live ids a collision has a chance of about 3e-10; it would also
// need the same workload and a time fit to cause a wrong link.
type requestKey uint64

type recordKind uint8

const (
	serverRecord recordKind = iota + 1
	orphanRecord
)

// linkState is where an orphan stands. Keeping it (and the partner) makes
// re-processing a batch idempotent: a pair is linked once, from one side.
type linkState uint8

const (
	unlinked       linkState = iota
	carriesLink              // the orphan span carries the link to partner
	partnerCarries           // the server span `partner` carries the link to it
)

// record is one remembered span: its ids, its time window, and the identity
// of the workload that emitted it.
type record struct {
	traceID  pcommon.TraceID
	spanID   pcommon.SpanID
	start    pcommon.Timestamp
	end      pcommon.Timestamp
	identity uint64 // hash of node_id, else canonical service+namespace, else service.name
	kind     recordKind
	state    linkState
	partner  uint8 // index into entry.recs of the server record, when linked
}

// pairable is the rule: same workload, never the same trace.
func pairable(a, b *record) bool {
	return a.identity == b.identity && a.traceID != b.traceID
}

// entry is one request id and the spans remembered under it. It holds no
// pointers, and neither does the map that finds it, so the garbage collector
// never scans the index, however full it is.
type entry struct {
	key  requestKey
	seen int64 // when the request id was first seen, ns since the detector's epoch
	n    uint8 // records in use
	recs [maxRecordsPerRequestID]record
}

// upsert adds r unless a record of the same span is already there. It
// returns r's index, or -1 when the entry is full.
func (e *entry) upsert(r record) int {
	for i := range e.n {
		if e.recs[i].spanID == r.spanID && e.recs[i].traceID == r.traceID {
			return int(i)
		}
	}
	if int(e.n) >= maxRecordsPerRequestID {
		return -1
	}
	e.recs[e.n] = r
	e.n++
	return int(e.n) - 1
}

// bestServer picks the probable parent of orphan o: a pairable SERVER record
// whose time window contains o's start (both spans come from one proxy, so
// their clocks agree), else the latest one that started before o, else the
// earliest. It returns -1 when there is none.
func (e *entry) bestServer(o *record) int {
	best, bestScore := -1, -1
	for i := range int(e.n) {
		s := &e.recs[i]
		if s.kind != serverRecord || !pairable(s, o) {
			continue
		}
		score := 0
		switch {
		case s.start <= o.start && o.start <= s.end:
			score = 2
		case s.start <= o.start:
			score = 1
		}
		switch {
		case best < 0 || score > bestScore:
			best, bestScore = i, score
		case score == bestScore && score > 0 && s.start > e.recs[best].start:
			best = i
		case score == 0 && bestScore == 0 && s.start < e.recs[best].start:
			best = i
		}
	}
	return best
}

// candidate is a span of the current batch that takes part in re-linking.
type candidate struct {
	span    ptrace.Span
	key     requestKey
	rec     record
	service string // normalised service.name; valid only during Process
}

// linked is one pair found by the current batch, to be counted after the
// index lock is released.
type linked struct{ service string }

// requestIndex remembers request ids for window, at most maxTracked of them,
// in first-seen order so that expiry and eviction both take the oldest.
// Entries live in a ring (slab) that grows on demand up to maxTracked and is
// then reused: after warm-up, a new request id allocates nothing.
// One mutex guards it: a batch does all its lookups and inserts under one
// lock, so concurrent batches see each other in a single order and exactly
// one side of a pair carries the link.
type requestIndex struct {
	mu         sync.Mutex
	window     int64
	maxTracked int
	entries    map[requestKey]uint32 // slot in slab
	slab       []entry               // ring, oldest at head
	head       int
	count      int
	evicted    int64 // capacity evictions not yet reported to telemetry
}

// initialSlots is the ring's first size; it doubles up to maxTracked.
const initialSlots = 1024

func newRequestIndex(window int64, maxTracked int) *requestIndex {
	return &requestIndex{
		window:     window,
		maxTracked: maxTracked,
		entries:    make(map[requestKey]uint32),
	}
}

func (ix *requestIndex) len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.count
}

func (ix *requestIndex) popOldest() {
	delete(ix.entries, ix.slab[ix.head].key)
	ix.head = (ix.head + 1) % len(ix.slab)
	ix.count--
}

// expire drops request ids first seen more than window ago.
func (ix *requestIndex) expire(now int64) {
	for ix.count > 0 && now-ix.slab[ix.head].seen >= ix.window {
		ix.popOldest()
	}
}

// grow doubles the ring (up to maxTracked), unwrapping it in age order.
func (ix *requestIndex) grow() {
	n := min(max(2*len(ix.slab), initialSlots), ix.maxTracked)
	grown := make([]entry, n)
	for i := range ix.count {
		grown[i] = ix.slab[(ix.head+i)%len(ix.slab)]
		ix.entries[grown[i].key] = uint32(i)
	}
	ix.slab, ix.head = grown, 0
}

// get returns the entry for key, inserting it (and evicting the oldest when
// full) if needed. The pointer is valid until the next get.
func (ix *requestIndex) get(key requestKey, now int64) *entry {
	if slot, ok := ix.entries[key]; ok {
		return &ix.slab[slot]
	}
	if ix.count == len(ix.slab) {
		if len(ix.slab) < ix.maxTracked {
			ix.grow()
		} else {
			ix.popOldest()
			ix.evicted++
		}
	}
	slot := (ix.head + ix.count) % len(ix.slab)
	ix.slab[slot] = entry{key: key, seen: now}
	ix.entries[key] = uint32(slot) //nolint:gosec // slot < max_tracked; a ring of 2^32 entries would not fit in memory
	ix.count++
	return &ix.slab[slot]
}

// link pairs the batch's SERVER spans and orphan roots with each other and
// with what earlier batches left in the index, adds the span links, and
// returns the pairs it found and the capacity evictions since the last call.
//
// SERVER spans go first and only meet orphans of earlier batches: across
// batches, whichever span comes second carries the link. The batch's own
// SERVER spans are in the index by the time its orphans look, so within one
// batch the orphan root carries the link to its probable parent.
func (ix *requestIndex) link(servers, orphans []candidate, now int64, pairs []linked) ([]linked, int64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.expire(now)

	for i := range servers {
		s := &servers[i]
		e := ix.get(s.key, now)
		si := e.upsert(s.rec)
		for j := range int(e.n) {
			o := &e.recs[j]
			if o.kind != orphanRecord || !pairable(&s.rec, o) {
				continue
			}
			switch {
			case o.state == unlinked && si >= 0:
				o.state, o.partner = partnerCarries, uint8(si) //nolint:gosec // si < maxRecordsPerRequestID (6)
				if addLink(s.span, o.traceID, o.spanID) {
					pairs = append(pairs, linked{service: s.service})
				}
			case o.state == partnerCarries && si >= 0 && int(o.partner) == si:
				// Seen before: make sure this copy of the span has its link.
				addLink(s.span, o.traceID, o.spanID)
			}
		}
	}

	for i := range orphans {
		o := &orphans[i]
		e := ix.get(o.key, now)
		oi := e.upsert(o.rec)
		r := &o.rec
		if oi >= 0 {
			r = &e.recs[oi]
		}
		switch r.state {
		case carriesLink:
			p := &e.recs[r.partner]
			addLink(o.span, p.traceID, p.spanID)
		case unlinked:
			si := e.bestServer(r)
			if si < 0 {
				continue
			}
			r.state, r.partner = carriesLink, uint8(si) //nolint:gosec // si < maxRecordsPerRequestID (6)
			p := &e.recs[si]
			if addLink(o.span, p.traceID, p.spanID) {
				pairs = append(pairs, linked{service: o.service})
			}
		}
	}
	ev := ix.evicted
	ix.evicted = 0
	return pairs, ev
}

// addLink adds a span link to (traceID, spanID) unless span already has one;
// it reports whether it added it.
func addLink(span ptrace.Span, traceID pcommon.TraceID, spanID pcommon.SpanID) bool {
	links := span.Links()
	for i := 0; i < links.Len(); i++ {
		l := links.At(i)
		if l.SpanID() == spanID && l.TraceID() == traceID {
			return false
		}
	}
	l := links.AppendEmpty()
	l.SetTraceID(traceID)
	l.SetSpanID(spanID)
	l.Attributes().PutStr(AttrLinkReason, LinkReasonRequestID)
	return true
}
