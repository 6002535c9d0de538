package journal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// diskRecord is one record as it lies in a segment file.
type diskRecord struct {
	file     string
	off, end int64
	ops      []parsedOp
	payload  []byte
}

// queueLike writes what a sending queue writes: an item with the queue's
// metadata in one batch, a read (metadata), a delete (metadata and the
// item), with some items left in the queue. Segments of 512 bytes give
// several files and a head with records still being appended.
func queueLike(t *testing.T, dir string) {
	t.Helper()
	j, err := Open(dir, Options{SegmentSize: 512})
	require.NoError(t, err)
	meta := func(i int) Op { return Op{Kind: Set, Key: "qmv0", Value: []byte(fmt.Sprintf("ri=%d wi=%d", i, i+1))} }
	for i := range 24 {
		require.NoError(t, j.Batch([]Op{meta(i), {Kind: Set, Key: strconv.Itoa(i), Value: bytes.Repeat([]byte{byte('a' + i)}, 20+i)}}))
		if i%4 == 0 {
			require.NoError(t, j.Batch([]Op{meta(i)}))
			require.NoError(t, j.Batch([]Op{meta(i), {Kind: Delete, Key: strconv.Itoa(i)}}))
		}
	}
	require.NoError(t, j.Close())
}

// readSegments is every segment's bytes, by file name, and their records in
// replay order.
func readSegments(t *testing.T, dir string) (map[string][]byte, []string, []diskRecord) {
	t.Helper()
	ids, err := segmentIDs(dir)
	require.NoError(t, err)
	files := map[string][]byte{}
	var names []string
	var recs []diskRecord
	for _, id := range ids {
		name := fmt.Sprintf("%016x%s", id, segSuffix)
		data, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		files[name] = data
		names = append(names, name)
		for off := int64(0); off < int64(len(data)); {
			payload, ops, ok := recordAt(data, off)
			require.True(t, ok, "the undamaged journal has a bad record in %s at %d", name, off)
			end := off + headerSize + int64(len(payload))
			recs = append(recs, diskRecord{file: name, off: off, end: end, ops: ops, payload: payload})
			off = end
		}
	}
	return files, names, recs
}

// model is the state the records leave: key -> value.
func model(recs []diskRecord) map[string]string {
	state := map[string]string{}
	for _, r := range recs {
		for _, op := range r.ops {
			if op.kind == Set {
				state[op.key] = string(r.payload[op.off : op.off+op.n])
			} else {
				delete(state, op.key)
			}
		}
	}
	return state
}

// Contracts 2 and 3 of issue 25: damage a small queue-shaped journal at
// every offset of every segment (a byte flipped, 16 bytes zeroed), and cut
// the newest segment at every byte of its last write. Each time, Open does
// not fail, the state is exactly what the undamaged records leave (a
// damaged record is lost, nothing else: at-least-once for the rest, and a
// batch is all or nothing), what it skipped is reported, and the journal
// takes writes and survives a reopen.
func TestDamageAtEveryOffsetLosesOnlyDamagedRecords(t *testing.T) {
	src := t.TempDir()
	queueLike(t, src)
	files, names, recs := readSegments(t, src)
	require.GreaterOrEqual(t, len(names), 3, "want several segments")
	keys := map[string]bool{"after": true}
	for _, r := range recs {
		for _, op := range r.ops {
			keys[op.key] = true
		}
	}
	newest := names[len(names)-1]
	last := recs[len(recs)-1]

	type damage struct {
		name  string
		file  string
		apply func([]byte) []byte
	}
	var cases []damage
	for _, name := range names {
		for off := range len(files[name]) {
			cases = append(cases,
				damage{fmt.Sprintf("%s/flip@%d", name, off), name, func(b []byte) []byte { b[off] ^= 0x5a; return b }},
				damage{fmt.Sprintf("%s/zero16@%d", name, off), name, func(b []byte) []byte {
					clear(b[off:min(off+16, len(b))])
					return b
				}})
		}
	}
	for cut := last.off; cut < last.end; cut++ {
		cases = append(cases, damage{fmt.Sprintf("%s/cut@%d", newest, cut), newest, func(b []byte) []byte { return b[:cut] }})
	}

	dir := t.TempDir()
	for _, c := range cases {
		// A fresh copy, then the damage.
		require.NoError(t, os.RemoveAll(dir))
		require.NoError(t, os.MkdirAll(dir, 0o700))
		for _, name := range names {
			data := slices.Clone(files[name])
			if name == c.file {
				data = c.apply(data)
			}
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
		}
		damaged := slices.Clone(files[c.file])
		damaged = c.apply(damaged)
		var intact []diskRecord
		lost := 0
		for _, r := range recs {
			if r.file == c.file && (r.end > int64(len(damaged)) || !bytes.Equal(files[c.file][r.off:r.end], damaged[r.off:r.end])) {
				lost++
				continue
			}
			intact = append(intact, r)
		}
		want := model(intact)

		j, err := Open(dir, Options{SegmentSize: 512})
		require.NoError(t, err, c.name)
		rec := j.Recovered()
		got := map[string]string{}
		for key := range keys {
			ops := []Op{{Kind: Get, Key: key}}
			require.NoError(t, j.Batch(ops))
			if ops[0].Value != nil {
				got[key] = string(ops[0].Value)
			}
		}
		require.Equal(t, want, got, "%s: %d records damaged", c.name, lost)
		cut := strings.Contains(c.name, "/cut@")
		switch {
		case cut:
			// A write cut short is a torn tail: cut off, the rest of the
			// batch with it, and nothing else.
			require.Equal(t, int64(len(damaged))-last.off, rec.TornBytes, c.name)
			require.Zero(t, rec.DamagedBytes, c.name)
		case lost > 0:
			require.Positive(t, rec.DamagedBytes+rec.TornBytes, "%s: damage not reported", c.name)
			require.LessOrEqual(t, rec.DamagedRecords, lost, "%s: more records reported than damaged", c.name)
		default:
			require.Zero(t, rec.DamagedBytes+rec.TornBytes, "%s: damage reported where none was", c.name)
		}
		require.Equal(t, len(recs)-lost, rec.Records, c.name)
		require.NoError(t, j.Batch([]Op{{Kind: Set, Key: "after", Value: []byte("v")}}))
		want["after"] = "v"
		require.NoError(t, j.Close())
		j, err = Open(dir, Options{SegmentSize: 512})
		require.NoError(t, err, c.name)
		got = map[string]string{}
		for key := range keys {
			ops := []Op{{Kind: Get, Key: key}}
			require.NoError(t, j.Batch(ops))
			if ops[0].Value != nil {
				got[key] = string(ops[0].Value)
			}
		}
		require.Equal(t, want, got, "%s: after a reopen", c.name)
		require.Zero(t, j.Recovered().TornBytes, "%s: a torn tail again after a reopen", c.name)
		require.NoError(t, j.Close())
	}
	t.Logf("%d damaged journals over %d segments and %d records", len(cases), len(names), len(recs))
}
