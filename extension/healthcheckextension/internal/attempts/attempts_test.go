package attempts

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPartialFailureKeepsLatestError(t *testing.T) {
	s := NewStore(time.Minute)
	t0 := time.Unix(1000, 0)
	s.Record("backend_auth", t0, "", "")
	s.Record("backend_auth", t0.Add(time.Second), "backend rejected data", "HTTP 413")
	s.Record("backend_auth", t0.Add(2*time.Second), "", "")

	got := s.Summary("backend_auth", t0.Add(3*time.Second), time.Minute)
	assert.True(t, got.Delivering, "the latest attempt succeeded")
	assert.Equal(t, int64(2), got.OK)
	assert.Equal(t, int64(1), got.Failed)
	assert.Equal(t, "backend rejected data", got.LastError, "a later success does not empty it")
	assert.Equal(t, "HTTP 413", got.ErrorCode)
	assert.Equal(t, t0.Add(time.Second), got.LastErrorAt)
	assert.Equal(t, t0.Add(2*time.Second), got.LastSuccess)

	// Outside the window the failure is gone; the counts too.
	got = s.Summary("backend_auth", t0.Add(2*time.Minute), time.Minute)
	assert.Empty(t, got.LastError)
	assert.Zero(t, got.Failed+got.OK)
	assert.True(t, got.Delivering)
}

func TestLatestAttemptDecidesDelivering(t *testing.T) {
	s := NewStore(time.Minute)
	t0 := time.Unix(1000, 0)
	s.Record("a", t0, "", "")
	s.Record("a", t0.Add(time.Second), "backend unreachable", "ConnectionRefused")
	assert.False(t, s.Summary("a", t0.Add(time.Second), time.Minute).Delivering)
	// An older attempt finishing late does not hide the newer failure.
	s.Record("a", t0.Add(500*time.Millisecond), "", "")
	assert.False(t, s.Summary("a", t0.Add(time.Second), time.Minute).Delivering)
	s.Record("a", t0.Add(2*time.Second), "", "")
	got := s.Summary("a", t0.Add(2*time.Second), time.Minute)
	assert.True(t, got.Delivering)
	assert.Equal(t, "backend unreachable", got.LastError)

	unknown := s.Summary("b", t0, time.Minute)
	assert.False(t, unknown.Seen)
	assert.True(t, unknown.Delivering, "nothing attempted, nothing to judge")
}

func TestBucketsArePruned(t *testing.T) {
	s := NewStore(10 * time.Second)
	t0 := time.Unix(1000, 0)
	for i := range 1000 {
		s.Record("a", t0.Add(time.Duration(i)*time.Second), "", "")
	}
	assert.LessOrEqual(t, len(s.byName["a"].buckets), 12)
	assert.Equal(t, int64(10), s.Summary("a", t0.Add(999*time.Second), 9*time.Second).OK)
}
