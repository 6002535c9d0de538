package orphans

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The ring must behave exactly like a FIFO of first sightings: expiry after
// window, eviction of the oldest at maxTracked, through growth and wrap-around.
func TestIndexRingMatchesFIFOModel(t *testing.T) {
	const (
		maxTracked = 3000 // above initialSlots, so the ring grows twice
		window     = 4000
	)
	ix := newRequestIndex(window, maxTracked)
	type item struct {
		key  requestKey
		seen int64
	}
	var model []item
	var evicted int64
	rng := rand.New(rand.NewPCG(1, 2))
	keyOf := func(i uint64) requestKey { return requestKey(i*0x9E3779B97F4A7C15 + 1) }
	now, next := int64(0), uint64(0)
	for step := range 20000 {
		if step > 8000 { // first fill up and evict, then let ids expire too
			now += int64(rng.IntN(3))
		}
		// expire, as link does before any lookup
		ix.expire(now)
		for len(model) > 0 && now-model[0].seen >= window {
			model = model[1:]
		}
		var k requestKey
		if len(model) > 0 && rng.IntN(4) == 0 {
			k = model[rng.IntN(len(model))].key // a known id: no insert
		} else {
			k = keyOf(next)
			next++
			if len(model) == maxTracked {
				model = model[1:]
				evicted++
			}
			model = append(model, item{k, now})
		}
		e := ix.get(k, now)
		require.Equal(t, k, e.key, "step %d", step)

		require.Equal(t, len(model), ix.count, "step %d", step)
		require.Len(t, ix.entries, len(model))
		if step%499 == 0 || step > 19990 {
			for i, m := range model {
				slot := (ix.head + i) % len(ix.slab)
				require.Equal(t, m.key, ix.slab[slot].key, "step %d, age %d", step, i)
				require.Equal(t, m.seen, ix.slab[slot].seen)
				require.Equal(t, uint32(slot), ix.entries[m.key])
			}
		}
	}
	require.Equal(t, evicted, ix.evicted)
	require.Positive(t, evicted, "the run reached max_tracked")
	require.Len(t, ix.slab, maxTracked, "the ring grew to max_tracked and no further")
}

func TestEntryKeepsAtMostMaxRecords(t *testing.T) {
	var e entry
	for i := range maxRecordsPerRequestID {
		require.Equal(t, i, e.upsert(record{spanID: [8]byte{byte(i + 1)}}))
	}
	require.Equal(t, -1, e.upsert(record{spanID: [8]byte{99}}), "full")
	require.Equal(t, 2, e.upsert(record{spanID: [8]byte{3}}), "a span already there keeps its slot")
}
