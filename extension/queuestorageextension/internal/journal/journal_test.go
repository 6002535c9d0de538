package journal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/extension/xextension/storage"
)

func open(t *testing.T, dir string, segSize int64) *Journal {
	t.Helper()
	j, err := Open(dir, Options{Sync: true, SegmentSize: segSize})
	require.NoError(t, err)
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func get(t *testing.T, j *Journal, key string) []byte {
	t.Helper()
	ops := []Op{{Kind: Get, Key: key}}
	require.NoError(t, j.Batch(ops))
	return ops[0].Value
}

func set(t *testing.T, j *Journal, kv ...string) {
	t.Helper()
	var ops []Op
	for i := 0; i+1 < len(kv); i += 2 {
		ops = append(ops, Op{Kind: Set, Key: kv[i], Value: []byte(kv[i+1])})
	}
	require.NoError(t, j.Batch(ops))
}

func del(t *testing.T, j *Journal, keys ...string) {
	t.Helper()
	var ops []Op
	for _, k := range keys {
		ops = append(ops, Op{Kind: Delete, Key: k})
	}
	require.NoError(t, j.Batch(ops))
}

func TestSetGetDeleteSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, 0)
	set(t, j, "meta", "m1", "1", "item one")
	set(t, j, "meta", "m2", "2", "item two")
	del(t, j, "1")
	assert.Nil(t, get(t, j, "1"))
	assert.Equal(t, "item two", string(get(t, j, "2")))
	require.NoError(t, j.Close())

	j = open(t, dir, 0)
	assert.Nil(t, get(t, j, "1"))
	assert.Equal(t, "item two", string(get(t, j, "2")))
	assert.Equal(t, "m2", string(get(t, j, "meta")))
	assert.Equal(t, Recovery{Segments: 1, Records: 3, Keys: 2}, j.Recovered())
}

// Gets in a batch see the sets and deletes before them, not after them, as
// the persistent queue's Batch(Set(meta), Get(item)) expects.
func TestBatchGetsSeeEarlierOps(t *testing.T) {
	j := open(t, t.TempDir(), 0)
	set(t, j, "a", "old")
	ops := []Op{
		{Kind: Get, Key: "a"},
		{Kind: Set, Key: "a", Value: []byte("new")},
		{Kind: Get, Key: "a"},
		{Kind: Delete, Key: "a"},
		{Kind: Get, Key: "a"},
		{Kind: Get, Key: "missing"},
	}
	require.NoError(t, j.Batch(ops))
	assert.Equal(t, "old", string(ops[0].Value))
	assert.Equal(t, "new", string(ops[2].Value))
	assert.Nil(t, ops[4].Value)
	assert.Nil(t, ops[5].Value)
	assert.Nil(t, get(t, j, "a"))
}

// A crash in the middle of an append leaves a torn record at the tail: Open
// cuts it off and keeps every record before it.
func TestTornTailIsCutOff(t *testing.T) {
	for _, cut := range []int{1, headerSize - 1, headerSize, headerSize + 3} {
		t.Run(strconv.Itoa(cut), func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, dir, 0)
			set(t, j, "1", "first")
			before := j.Stats().FileBytes
			set(t, j, "2", "second, torn")
			require.NoError(t, j.Close())

			seg := filepath.Join(dir, fmt.Sprintf("%016x%s", 1, segSuffix))
			require.NoError(t, os.Truncate(seg, before+int64(cut)))

			j = open(t, dir, 0)
			assert.Equal(t, "first", string(get(t, j, "1")))
			assert.Nil(t, get(t, j, "2"))
			assert.Equal(t, int64(cut), j.Recovered().TornBytes)
			st, err := os.Stat(seg)
			require.NoError(t, err)
			assert.Equal(t, before, st.Size(), "the torn bytes are gone from the file")
			// Appends continue after the last good record.
			set(t, j, "3", "third")
			require.NoError(t, j.Close())
			j = open(t, dir, 0)
			assert.Equal(t, "third", string(get(t, j, "3")))
			assert.Zero(t, j.Recovered().TornBytes)
		})
	}
}

// A damaged record in the middle of a segment fails its checksum and is
// skipped: only it is lost, the records after it are kept, and Recovery
// says where, how many records and how many bytes.
func TestDamagedRecordIsSkipped(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, 0)
	set(t, j, "1", "first")
	before := j.Stats().FileBytes
	set(t, j, "2", "second")
	second := j.Stats().FileBytes - before
	set(t, j, "3", "third")
	require.NoError(t, j.Close())

	seg := filepath.Join(dir, fmt.Sprintf("%016x%s", 1, segSuffix))
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{0xff}, before+headerSize+2)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	j = open(t, dir, 0)
	assert.Equal(t, "first", string(get(t, j, "1")))
	assert.Nil(t, get(t, j, "2"), "the damaged record is lost")
	assert.Equal(t, "third", string(get(t, j, "3")), "the record after it is kept")
	rec := j.Recovered()
	assert.Equal(t, []Damage{{File: filepath.Base(seg), Offset: before, Bytes: second, Records: 1, Exact: true}}, rec.Damaged)
	assert.Equal(t, 1, rec.DamagedRecords)
	assert.Equal(t, second, rec.DamagedBytes)
	assert.Zero(t, rec.TornBytes, "damage with a valid record after it is not a torn tail")
}

// Damage in a record's header (its length) loses no more: the scan finds
// the next record byte by byte, and the count says it is a lower bound.
func TestDamagedHeaderIsSkipped(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, 0)
	set(t, j, "1", "first")
	before := j.Stats().FileBytes
	set(t, j, "2", "second")
	set(t, j, "3", "third")
	require.NoError(t, j.Close())
	seg := filepath.Join(dir, fmt.Sprintf("%016x%s", 1, segSuffix))
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{0x7f, 0x7f, 0x7f, 0x00}, before) // a length past the end
	require.NoError(t, err)
	require.NoError(t, f.Close())

	j = open(t, dir, 0)
	assert.Equal(t, "first", string(get(t, j, "1")))
	assert.Nil(t, get(t, j, "2"))
	assert.Equal(t, "third", string(get(t, j, "3")))
	require.Len(t, j.Recovered().Damaged, 1)
	d := j.Recovered().Damaged[0]
	assert.Equal(t, before, d.Offset)
	assert.False(t, d.Exact)
	assert.Equal(t, 1, d.Records)
}

// An older segment's damage is skipped the same way and its file is not
// cut: appends go to the newest segment only.
func TestDamagedOlderSegmentIsNotCut(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, 256)
	for i := range 12 {
		set(t, j, strconv.Itoa(i), strings.Repeat("v", 60))
	}
	require.GreaterOrEqual(t, j.Stats().Segments, 3)
	require.NoError(t, j.Close())
	first := filepath.Join(dir, fmt.Sprintf("%016x%s", 1, segSuffix))
	st, err := os.Stat(first)
	require.NoError(t, err)
	// Zero the end of the oldest segment: no valid record after the damage.
	f, err := os.OpenFile(first, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(make([]byte, 20), st.Size()-20)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	j = open(t, dir, 256)
	rec := j.Recovered()
	require.Len(t, rec.Damaged, 1)
	assert.Equal(t, filepath.Base(first), rec.Damaged[0].File)
	assert.Zero(t, rec.TornBytes)
	after, err := os.Stat(first)
	require.NoError(t, err)
	assert.Equal(t, st.Size(), after.Size(), "an older segment is not cut")
	lost := 0
	for i := range 12 {
		if get(t, j, strconv.Itoa(i)) == nil {
			lost++
		}
	}
	assert.Equal(t, 1, lost, "only the damaged record")
}

// Segments roll at SegmentSize, and a segment goes once none of its values
// is the latest of a live key; the journal's files stay near its live data
// however much went through it.
func TestDeadSegmentsAreRemoved(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, 1<<20)
	item := bytes.Repeat([]byte("x"), 100<<10)
	for i := range 200 { // 20 MiB through a queue that holds at most 4 items
		require.NoError(t, j.Batch([]Op{{Kind: Set, Key: "meta", Value: []byte(strconv.Itoa(i))}, {Kind: Set, Key: strconv.Itoa(i), Value: item}}))
		if i >= 4 {
			del(t, j, strconv.Itoa(i-4))
		}
	}
	st := j.Stats()
	assert.Equal(t, 5, st.Keys)
	assert.LessOrEqual(t, st.Segments, 2)
	assert.Less(t, st.FileBytes, int64(2<<20))
	files, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, files, st.Segments+1, "the segments and the lock file")

	require.NoError(t, j.Close())
	j = open(t, dir, 1<<20)
	for i := 196; i < 200; i++ {
		assert.Equal(t, item, get(t, j, strconv.Itoa(i)))
	}
	assert.Equal(t, "199", string(get(t, j, "meta")))
}

// An item that never finishes pins the oldest segment; once it is mostly
// dead it is compacted (the item copied forward) so the files stay bounded.
func TestPinnedSegmentIsCompacted(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, 1<<20)
	set(t, j, "stuck", "an item whose export never ends")
	item := bytes.Repeat([]byte("y"), 100<<10)
	for i := range 200 {
		set(t, j, strconv.Itoa(i), string(item))
		if i >= 2 {
			del(t, j, strconv.Itoa(i-2))
		}
	}
	st := j.Stats()
	assert.LessOrEqual(t, st.Segments, 4)
	assert.Less(t, st.FileBytes, int64(4<<20))
	assert.Equal(t, "an item whose export never ends", string(get(t, j, "stuck")))
	require.NoError(t, j.Close())
	j = open(t, dir, 1<<20)
	assert.Equal(t, "an item whose export never ends", string(get(t, j, "stuck")))
	assert.Equal(t, 3, j.Stats().Keys)
}

// A record larger than a segment gets a segment of its own.
func TestRecordLargerThanASegment(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, 1<<20)
	set(t, j, "small", "s")
	big := bytes.Repeat([]byte("z"), 3<<20)
	require.NoError(t, j.Batch([]Op{{Kind: Set, Key: "big", Value: big}}))
	set(t, j, "after", "a")
	require.NoError(t, j.Close())
	j = open(t, dir, 1<<20)
	assert.Equal(t, big, get(t, j, "big"))
	assert.Equal(t, "a", string(get(t, j, "after")))
	assert.Equal(t, "s", string(get(t, j, "small")))
}

// Only writes of new keys sync at once; overwrites and deletes wait for the
// next sync (a later new key, Sync, or Close).
func TestOnlyNewKeysSyncAtOnce(t *testing.T) {
	j := open(t, t.TempDir(), 0)
	set(t, j, "item", "v")
	assert.False(t, j.dirty, "a new key is synced before Batch returns")
	set(t, j, "item", "v2")
	assert.True(t, j.dirty, "an overwrite waits")
	require.NoError(t, j.Sync())
	assert.False(t, j.dirty)
	del(t, j, "item")
	assert.True(t, j.dirty, "a delete waits")
	set(t, j, "next", "v")
	assert.False(t, j.dirty, "the next new key syncs what waited too")
}

func TestClosedJournalRefusesCalls(t *testing.T) {
	j := open(t, t.TempDir(), 0)
	require.NoError(t, j.Close())
	require.ErrorIs(t, j.Batch([]Op{{Kind: Get, Key: "a"}}), ErrClosed)
	require.ErrorIs(t, j.Sync(), ErrClosed)
	require.NoError(t, j.Close(), "a second Close is a no-op")
}

// Files in the directory that are not segments are left alone.
func TestForeignFilesAreIgnored(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "zz.seg"), []byte("x"), 0o600))
	j := open(t, dir, 0)
	set(t, j, "a", "b")
	require.NoError(t, j.Close())
	j = open(t, dir, 0)
	assert.Equal(t, "b", string(get(t, j, "a")))
	_, err := os.Stat(filepath.Join(dir, "notes.txt"))
	require.NoError(t, err)
}

// BenchmarkQueueItem is one sending-queue item's life as the persistent
// queue drives it: written with the metadata (synced), read back with the
// metadata, deleted with the metadata.
func BenchmarkQueueItem(b *testing.B) {
	for _, size := range []int{8 << 10, 200 << 10} {
		b.Run(fmt.Sprintf("item=%dKiB", size>>10), func(b *testing.B) {
			j, err := Open(b.TempDir(), Options{Sync: true})
			require.NoError(b, err)
			defer j.Close()
			item := bytes.Repeat([]byte("q"), size)
			meta := bytes.Repeat([]byte("m"), 40)
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				key := strconv.Itoa(i)
				require.NoError(b, j.Batch([]Op{{Kind: Set, Key: "meta", Value: meta}, {Kind: Set, Key: key, Value: item}}))
				ops := []Op{{Kind: Set, Key: "meta", Value: meta}, {Kind: Get, Key: key}}
				require.NoError(b, j.Batch(ops))
				require.NoError(b, j.Batch([]Op{{Kind: Set, Key: "meta", Value: meta}, {Kind: Delete, Key: key}}))
			}
		})
	}
}

// On a (nearly) full volume new keys are refused, while overwrites and
// deletes still go through: the queue can record the reads and deletes
// that drain it, and frees space by doing so.
func TestReserveRefusesNewKeysOnly(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, 0)
	set(t, j, "meta", "0", "item", "v")
	j.opts.Reserve = 1 << 62 // more than any volume has free
	err := j.Batch([]Op{{Kind: Set, Key: "meta", Value: []byte("1")}, {Kind: Set, Key: "next", Value: []byte("v")}})
	require.ErrorIs(t, err, ErrDiskFull)
	require.ErrorIs(t, err, storage.ErrStorageFull, "the collector's typed storage-full error")
	assert.Contains(t, err.Error(), "queue volume full")
	assert.Nil(t, get(t, j, "next"))
	assert.Equal(t, "0", string(get(t, j, "meta")), "a refused batch writes nothing")
	set(t, j, "meta", "2")
	del(t, j, "item")
	require.NoError(t, j.Close())
	j = open(t, dir, 0)
	assert.Equal(t, "2", string(get(t, j, "meta")))
	assert.Nil(t, get(t, j, "item"))
}

// A queue that drained leaves its items dead in the only segment, the
// head: it is retired (its few current values copied to a new head) once
// it is half a segment, or at once when the volume is short of space.
func TestDrainedHeadIsRetired(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, 4<<20)
	item := bytes.Repeat([]byte("d"), 100<<10)
	for i := range 30 { // 3 MiB: more than half a segment
		require.NoError(t, j.Batch([]Op{{Kind: Set, Key: "meta", Value: []byte(strconv.Itoa(i))}, {Kind: Set, Key: strconv.Itoa(i), Value: item}}))
	}
	for i := range 30 {
		require.NoError(t, j.Batch([]Op{{Kind: Set, Key: "meta", Value: []byte(strconv.Itoa(i))}, {Kind: Delete, Key: strconv.Itoa(i)}}))
	}
	st := j.Stats()
	assert.Equal(t, 1, st.Keys)
	assert.Less(t, st.FileBytes, int64(1<<20), "the dead items are gone from disk")

	// Below half a segment, only a short volume retires the head.
	for i := range 5 {
		set(t, j, strconv.Itoa(100+i), string(item))
		del(t, j, strconv.Itoa(100+i))
	}
	before := j.Stats().FileBytes
	assert.Greater(t, before, int64(500<<10))
	j.opts.Reserve = 1 << 62
	require.ErrorIs(t, j.Batch([]Op{{Kind: Set, Key: "new", Value: item}}), ErrDiskFull)
	assert.Less(t, j.Stats().FileBytes, int64(1<<10), "retired while looking for room")
	require.NoError(t, j.Close())
	j = open(t, dir, 4<<20)
	assert.Equal(t, "29", string(get(t, j, "meta")))
	assert.Equal(t, 1, j.Stats().Keys)
}

// Two writers on one directory would interleave records: the second Open
// is refused while the first is open, and succeeds once it is closed.
func TestOneWriterPerDirectory(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, 0)
	_, err := Open(dir, Options{})
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, j.Close())
	j2, err := Open(dir, Options{})
	require.NoError(t, err)
	require.NoError(t, j2.Close())
}
