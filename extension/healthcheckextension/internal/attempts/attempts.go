// Package attempts keeps, per observer (a backend_auth instance, one per
// exporter), the outcomes of recent export attempts: whether the latest one
// succeeded, the latest failure with its class and code, and counts over a
// window. It is fed by backend_auth's gRPC interceptor and HTTP round
// tripper, which see each attempt's typed outcome; it reads no logs.
package attempts // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/attempts"

import (
	"sync"
	"time"
)

// bucket counts the attempts of one second.
type bucket struct {
	second     int64
	ok, failed int64
}

// state is one observer's record.
type state struct {
	buckets     []bucket // oldest first, one per second with attempts
	latestOK    bool
	latestAt    time.Time
	lastSuccess time.Time
	lastFailure time.Time
	class, code string // of lastFailure
}

// Summary is one observer's attempts as /status shows them.
type Summary struct {
	// Seen is false when no attempt was ever recorded.
	Seen bool
	// Delivering says whether the latest attempt succeeded (true before any).
	Delivering bool
	// OK and Failed count attempts over the window.
	OK, Failed int64
	// LastSuccess is the time of the latest successful attempt.
	LastSuccess time.Time
	// LastError, ErrorCode and LastErrorAt describe the latest failed attempt
	// within the window; empty when there was none.
	LastError, ErrorCode string
	LastErrorAt          time.Time
}

// Store is safe for concurrent use: Record is called on the exporters'
// goroutines, Summary on /status requests. Both only take a short lock.
type Store struct {
	keep time.Duration

	mu     sync.Mutex
	byName map[string]*state
}

// NewStore keeps counts for keep, the longest window they are asked for.
func NewStore(keep time.Duration) *Store {
	return &Store{keep: keep, byName: map[string]*state{}}
}

// Record notes one attempt of observer at at; class is empty for a success.
func (s *Store) Record(observer string, at time.Time, class, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byName[observer]
	if st == nil {
		st = &state{}
		s.byName[observer] = st
	}
	// Attempts finish concurrently; a late report of an older attempt must
	// not overwrite a newer outcome.
	if !at.Before(st.latestAt) {
		st.latestOK, st.latestAt = class == "", at
	}
	sec := at.Unix()
	if n := len(st.buckets); n == 0 || st.buckets[n-1].second < sec {
		st.buckets = append(st.buckets, bucket{second: sec})
	}
	b := &st.buckets[len(st.buckets)-1]
	for i := len(st.buckets) - 1; i >= 0 && st.buckets[i].second >= sec; i-- {
		b = &st.buckets[i]
	}
	if class == "" {
		b.ok++
		if at.After(st.lastSuccess) {
			st.lastSuccess = at
		}
	} else {
		b.failed++
		if !at.Before(st.lastFailure) {
			st.lastFailure, st.class, st.code = at, class, code
		}
	}
	cut := 0
	for cut < len(st.buckets) && sec-st.buckets[cut].second > int64(s.keep/time.Second)+1 {
		cut++
	}
	st.buckets = st.buckets[cut:]
}

// Summary returns observer's attempts over the window ending at now.
func (s *Store) Summary(observer string, now time.Time, window time.Duration) Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byName[observer]
	if st == nil {
		return Summary{Delivering: true}
	}
	from := now.Add(-window)
	sum := Summary{Seen: true, Delivering: st.latestOK, LastSuccess: st.lastSuccess}
	for _, b := range st.buckets {
		if b.second >= from.Unix() {
			sum.OK += b.ok
			sum.Failed += b.failed
		}
	}
	if !st.lastFailure.IsZero() && !st.lastFailure.Before(from) {
		sum.LastError, sum.ErrorCode, sum.LastErrorAt = st.class, st.code, st.lastFailure
	}
	return sum
}
