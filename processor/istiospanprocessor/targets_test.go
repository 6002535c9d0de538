package istiospanprocessor

import (
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTargetCache(t *testing.T) {
	var tc targetCache
	assert.Equal(t, "reviews.bookinfo", tc.get("reviews", "bookinfo"))
	// A cached name is handed out again without building it.
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = tc.get("reviews", "bookinfo") }))

	// Concurrent inserts past the bound: every name is still right.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range maxCachedTargets {
				c := "svc" + strconv.Itoa(i)
				ns := "ns" + strconv.Itoa(g)
				if got := tc.get(c, ns); got != c+"."+ns {
					t.Errorf("get(%q, %q) = %q", c, ns, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	assert.Len(t, *tc.m.Load(), maxCachedTargets)
	assert.Equal(t, "late.ns9", tc.get("late", "ns9"))
}
