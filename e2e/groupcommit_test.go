package e2e

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// A sender's OK means its spans are on disk, with group_commit merging
// concurrent requests in front of the persistent queue (shipped config.yaml).
// 32 senders send Envoy-shaped requests (one resource, 5 spans) as fast as
// they are answered, with the backend down so that nothing leaves the queue
// by export; the moment the 1500th OK arrives, the sender that got it
// SIGKILLs the collector. After a restart on the same queue directory, every
// span whose request got OK must reach the backend: it can only come from
// the disk.
func TestGroupCommitOKMeansOnDisk(t *testing.T) {
	const (
		senders = 32
		killAt  = 1500 // OKs before the kill
	)
	backend := harness.StartBackend(t)
	backend.Stop()
	env := shippedEnv(backend, "grpc", t.TempDir())
	col := startShipped(t, "grpc", env)

	l := &loadGen{
		t: t, prefix: rand.Uint32(), batch: 5,
		accepted: map[uint32]bool{}, refused: map[uint32]bool{}, codes: map[codes.Code]int{},
	}
	l.retarget(col.GRPCEndpoint)
	var (
		oks                  atomic.Int64
		killed               = make(chan struct{})
		mergedReqs, mergedWr float64
		wg                   sync.WaitGroup
	)
	for range senders {
		wg.Go(func() {
			for {
				select {
				case <-killed:
					return
				default:
				}
				if l.sendOne() != nil {
					continue
				}
				switch oks.Add(1) {
				case killAt / 2:
					// group_commit's own account of what it merged so far.
					mergedReqs = scrapeMetric(t, col, "otelcol_processor_group_commit_requests_per_write_sum")
					mergedWr = scrapeMetric(t, col, "otelcol_processor_group_commit_requests_per_write_count")
				case killAt:
					col.Kill() // right after this OK
					close(killed)
					return
				}
			}
		})
	}
	select {
	case <-killed:
	case <-time.After(2 * time.Minute):
		t.Fatalf("only %d OKs in 2 minutes", oks.Load())
	}
	wg.Wait()
	t.Logf("before the kill: %.0f requests in %.0f queue writes", mergedReqs, mergedWr)
	if mergedReqs <= mergedWr {
		t.Errorf("group_commit merged nothing (%.0f requests in %.0f writes): the test did not exercise group commit", mergedReqs, mergedWr)
	}

	if err := backend.Start(); err != nil {
		t.Fatal(err)
	}
	startShipped(t, "grpc", env)
	tl := l.waitDelivered(backend, 60*time.Second)
	t.Logf("SIGKILL right after OK number %d, %d senders of 5-span requests: %s", killAt, senders, tl)
	if tl.Accepted < killAt*5 {
		t.Errorf("only %d spans accepted, want at least %d", tl.Accepted, killAt*5)
	}
	if tl.Lost != 0 {
		t.Errorf("%d spans whose sender got OK were not on disk: lost in the kill", tl.Lost)
	}
}
