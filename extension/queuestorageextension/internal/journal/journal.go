// Package journal is an append-only key-value log on disk, shaped for a
// sending queue: values are written once, in order, and each write of a
// new key is on disk (fdatasync) before it returns, while overwrites and
// deletes of existing keys (the queue's read index, its "done" deletes) may
// wait for the next sync. A queue's item is written once and read back
// once, so a log writes each byte once; a B+tree (bbolt) rewrites the page
// that holds the newest item on every index update.
//
// The log is a directory of segment files. A segment is a sequence of
// records; a record is one Batch's sets and deletes, framed with its
// length and a CRC-32C, so a torn write at the tail (a crash in the middle
// of an append) is found and cut off at the next Open. An in-memory index
// maps each key to its latest value's place on disk. A segment is removed
// once no key's latest version lives in it, oldest first; a segment pinned
// by a few old values (an item that never finishes) is compacted: its live
// values are copied to the head and it is removed.
package journal // import "github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension/internal/journal"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/extension/xextension/storage"
)

// Op is one set, delete or get, as in the collector's storage API.
type Op struct {
	Kind  OpKind
	Key   string
	Value []byte // set: the value; get: the result (nil when not found)
}

// OpKind is what an Op does.
type OpKind uint8

const (
	Get OpKind = iota
	Set
	Delete
)

// Options tune a Journal.
type Options struct {
	// Sync makes writes of new keys durable (fdatasync) before they return.
	// Off: nothing is synced (a process crash still loses nothing written:
	// the data is in the kernel's page cache).
	Sync bool
	// SegmentSize is the size at which the head segment is closed and a new
	// one started. A record larger than it gets a segment of its own.
	SegmentSize int64
	// Reserve is disk space kept free for overwrites and deletes: a write
	// that creates a key is refused (ErrDiskFull) when it would leave less
	// than Reserve bytes free on the volume. On a full disk the queue must
	// still be able to record that it read and exported items, or it
	// would skip them; new items are refused instead, which the sender
	// sees as a retryable error. 0: no reserve.
	Reserve int64
	// ObserveSync, if set, is told how long each fdatasync took.
	ObserveSync func(time.Duration)
}

// DefaultReserve is room for the reads and deletes of thousands of queue
// items (a record of those is about a hundred bytes).
const DefaultReserve = 1 << 20

// ErrDiskFull is returned for a write of a new key that would eat into
// Options.Reserve. It wraps storage.ErrStorageFull, so that errors.Is sees
// the collector's typed "storage full" error; its text stays "queue volume
// full", which the senders and /status show.
var ErrDiskFull error = diskFullError{}

type diskFullError struct{}

func (diskFullError) Error() string { return "queue volume full" }
func (diskFullError) Unwrap() error { return storage.ErrStorageFull }

// DefaultSegmentSize keeps segments small enough to be freed soon after the
// queue drains, and large enough that opening and removing them is rare.
const DefaultSegmentSize = 32 << 20

// ErrClosed is returned by calls on a closed Journal.
var ErrClosed = errors.New("journal is closed")

// Journal is the log and its index. Safe for concurrent use; calls are
// taken one at a time (the sending queue makes them one at a time anyway).
type Journal struct {
	dir  string
	opts Options

	mu     sync.Mutex
	segs   []*segment // oldest first; the last is the head, open for appends
	index  map[string]loc
	lock   *os.File // held (flock) while open: one writer per directory
	buf    []byte   // the record buffer, reused
	dirty  bool     // records written since the last sync
	closed bool
	// retiring lets reclaim compact the oldest segment whatever the
	// segment count (see retireHead).
	retiring bool
	// Recovered is what Open found: records replayed and bytes of torn tail
	// cut off.
	recovered Recovery
	// full: the last write of a new key was refused for space (until one
	// succeeds); syncErr: the last fdatasync failed (until one succeeds).
	full    bool
	syncErr error
}

// Recovery describes what Open did to the files it found.
type Recovery struct {
	Segments  int   // segment files read
	Records   int   // records replayed
	Keys      int   // keys live after replay
	TornBytes int64 // bytes cut off the end of the newest segment (a torn last write)
	// Damaged are the spans of records skipped because they failed their
	// checksum or did not parse, with a valid record after them (or in an
	// older segment); DamagedRecords and DamagedBytes are their totals.
	Damaged        []Damage
	DamagedRecords int
	DamagedBytes   int64
}

// Damage is one span of bad bytes that Open skipped.
type Damage struct {
	File    string // the segment file's name
	Offset  int64  // where the first bad record starts
	Bytes   int64
	Records int  // records the span held
	Exact   bool // false: their headers were damaged, Records is a lower bound
}

type segment struct {
	id        uint64
	f         *os.File
	size      int64
	live      int   // keys whose latest version is in this segment
	liveBytes int64 // their values' bytes
}

// loc is where a key's latest value lives.
type loc struct {
	seg *segment
	off int64 // of the value in the segment file
	n   int64
}

const (
	headerSize = 8 // uint32 payload length, uint32 CRC-32C of the payload
	segSuffix  = ".seg"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Open opens (or creates) the journal in dir, replaying every segment to
// rebuild the index and cutting off a torn tail.
func Open(dir string, opts Options) (*Journal, error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	j := &Journal{dir: dir, opts: opts, index: map[string]loc{}, lock: lock}
	ids, err := segmentIDs(dir)
	if err != nil {
		j.closeFiles()
		return nil, err
	}
	for i, id := range ids {
		if err := j.replay(id, i == len(ids)-1); err != nil {
			j.closeFiles()
			return nil, err
		}
	}
	if len(j.segs) == 0 {
		if err := j.newSegment(1); err != nil {
			j.closeFiles()
			return nil, err
		}
	}
	if err := j.reclaim(); err != nil {
		j.closeFiles()
		return nil, err
	}
	j.recovered.Keys = len(j.index)
	return j, nil
}

// Recovered says what Open found.
func (j *Journal) Recovered() Recovery { return j.recovered }

func segmentIDs(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || e.IsDir() {
			continue
		}
		id, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue // not ours
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

func (j *Journal) segPath(id uint64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%016x%s", id, segSuffix))
}

// replay reads one segment's records into the index. A record that is cut
// short or fails its checksum is damage, not the end of the data: the scan
// resumes at the next valid record (see resync), and only the records in
// between are lost, each span of them reported in Recovery.Damaged. Bad
// bytes with no valid record after them, at the end of the newest segment,
// are a torn last write, never acknowledged (an acknowledged write is
// synced, and a sync covers everything written before it): they are cut off,
// so that appends follow the last good record. In an older segment they are
// damage, and the file is left as it is.
func (j *Journal) replay(id uint64, newest bool) error {
	f, err := os.OpenFile(j.segPath(id), os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	s := &segment{id: id, f: f}
	j.segs = append(j.segs, s)
	j.recovered.Segments++
	// One segment at a time, whole: resync needs to look ahead, and a
	// segment is SegmentSize (or one record) long.
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	size := int64(len(data))
	var off int64
	for off < size {
		if payload, ops, ok := recordAt(data, off); ok {
			j.index1(s, off+headerSize, ops)
			off += headerSize + int64(len(payload))
			j.recovered.Records++
			continue
		}
		next := resync(data, off)
		if next < 0 && newest {
			break // a torn tail: cut below
		}
		if next < 0 {
			next = size
		}
		records, exact := countRecords(data, off, next)
		j.recovered.Damaged = append(j.recovered.Damaged, Damage{
			File: filepath.Base(j.segPath(id)), Offset: off, Bytes: next - off, Records: records, Exact: exact,
		})
		j.recovered.DamagedRecords += records
		j.recovered.DamagedBytes += next - off
		off = next
	}
	if off < size {
		j.recovered.TornBytes += size - off
		if err := f.Truncate(off); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	s.size = off
	return nil
}

// recordAt is the record at data[off:] if it is whole, passes its checksum,
// is not empty (no write makes an empty record, and a zeroed range would
// read as a run of them) and parses.
func recordAt(data []byte, off int64) ([]byte, []parsedOp, bool) {
	if int64(len(data))-off < headerSize {
		return nil, nil, false
	}
	n := int64(binary.LittleEndian.Uint32(data[off : off+4]))
	if n == 0 || off+headerSize+n > int64(len(data)) {
		return nil, nil, false
	}
	payload := data[off+headerSize : off+headerSize+n]
	// The op kind first: it rejects almost every wrong offset before the
	// checksum reads the payload.
	if k := OpKind(payload[0]); k != Set && k != Delete {
		return nil, nil, false
	}
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(data[off+4:off+8]) {
		return nil, nil, false
	}
	ops, err := parse(payload)
	if err != nil {
		return nil, nil, false
	}
	return payload, ops, true
}

// resync is the offset of the first valid record after the bad one at off,
// or -1. Every later offset is tried, not only the one the bad record's
// length points to: a damaged length could point past intact records. A
// false match needs a CRC-32C collision on bytes that also parse as ops (or
// a value that holds a whole record, made on purpose).
func resync(data []byte, off int64) int64 {
	for p := off + 1; p+headerSize < int64(len(data)); p++ {
		if _, _, ok := recordAt(data, p); ok {
			return p
		}
	}
	return -1
}

// countRecords is how many records data[from:to] held, following their
// length fields. When the lengths do not lead exactly to to (a damaged
// header), the count is unknown: 1, the lower bound, with exact false.
func countRecords(data []byte, from, to int64) (int, bool) {
	n := 0
	for p := from; p < to; n++ {
		if to-p < headerSize {
			return 1, false
		}
		length := int64(binary.LittleEndian.Uint32(data[p : p+4]))
		if length == 0 || p+headerSize+length > to {
			return 1, false
		}
		p += headerSize + length
	}
	return max(n, 1), true
}

// Op encoding in a record's payload: kind byte, uvarint key length, key,
// and for a set, uvarint value length and value.

func encode(buf []byte, ops []Op) []byte {
	for _, op := range ops {
		switch op.Kind {
		case Set:
			buf = append(buf, byte(Set))
			buf = binary.AppendUvarint(buf, uint64(len(op.Key)))
			buf = append(buf, op.Key...)
			buf = binary.AppendUvarint(buf, uint64(len(op.Value)))
			buf = append(buf, op.Value...)
		case Delete:
			buf = append(buf, byte(Delete))
			buf = binary.AppendUvarint(buf, uint64(len(op.Key)))
			buf = append(buf, op.Key...)
		}
	}
	return buf
}

// finish fills in a record's header: its payload's length and CRC-32C.
// The payload is at most 4 GiB (checked by write).
func finish(rec []byte) []byte {
	payload := rec[headerSize:]
	binary.LittleEndian.PutUint32(rec[0:4], uint32(len(payload))) //nolint:gosec // at most 4 GiB
	binary.LittleEndian.PutUint32(rec[4:8], crc32.Checksum(payload, crcTable))
	return rec
}

var errBadRecord = errors.New("malformed record")

// parsedOp is one set or delete of a record; a set's value is at off, n
// bytes, in the payload.
type parsedOp struct {
	kind   OpKind
	key    string
	off, n int
}

// parse reads a record's ops, all or none.
func parse(payload []byte) ([]parsedOp, error) {
	var ops []parsedOp
	for p := 0; p < len(payload); {
		op := parsedOp{kind: OpKind(payload[p])}
		key, next, ok := field(payload, p+1)
		if !ok {
			return nil, errBadRecord
		}
		op.key, p = string(key), next
		switch op.kind {
		case Set:
			value, next, ok := field(payload, p)
			if !ok {
				return nil, errBadRecord
			}
			op.off, op.n, p = next-len(value), len(value), next
		case Delete:
		default:
			return nil, errBadRecord
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// field reads a uvarint length at b[p:] and that many bytes after it.
func field(b []byte, p int) (val []byte, next int, ok bool) {
	if p > len(b) {
		return nil, 0, false
	}
	n, k := binary.Uvarint(b[p:])
	if k <= 0 || n > uint64(len(b)-p-k) { //nolint:gosec // len(b)-p-k >= 0: Uvarint read k bytes of b[p:]
		return nil, 0, false
	}
	end := p + k + int(n) //nolint:gosec // n <= len(b)
	return b[p+k : end], end, true
}

// apply indexes a record's ops; base is the payload's offset in s.
func (j *Journal) apply(s *segment, base int64, payload []byte) error {
	ops, err := parse(payload)
	if err != nil {
		return err
	}
	j.index1(s, base, ops)
	return nil
}

// index1 indexes one record's parsed ops.
func (j *Journal) index1(s *segment, base int64, ops []parsedOp) {
	for _, op := range ops {
		if op.kind == Set {
			j.put(op.key, loc{seg: s, off: base + int64(op.off), n: int64(op.n)})
		} else {
			j.drop(op.key)
		}
	}
}

func (j *Journal) put(key string, l loc) {
	j.drop(key)
	j.index[key] = l
	l.seg.live++
	l.seg.liveBytes += l.n
}

func (j *Journal) drop(key string) {
	if old, ok := j.index[key]; ok {
		old.seg.live--
		old.seg.liveBytes -= old.n
		delete(j.index, key)
	}
}

// Batch runs ops in order: gets see the sets and deletes before them. The
// sets and deletes are one record, all or nothing after a crash. If any
// set creates a key that did not exist, the record is synced before Batch
// returns; otherwise it is synced by the next such write, by Sync, or by
// Close.
func (j *Journal) Batch(ops []Op) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	writes := 0
	durable := false
	for _, op := range ops {
		switch op.Kind {
		case Set:
			writes++
			if _, ok := j.index[op.Key]; !ok {
				durable = true
			}
		case Delete:
			writes++
		}
	}
	// Gets are answered before the record is applied, from the ops before
	// them in this batch or from the index.
	for i := range ops {
		if ops[i].Kind != Get {
			continue
		}
		v, err := j.readThrough(ops[:i], ops[i].Key)
		if err != nil {
			return err
		}
		ops[i].Value = v
	}
	if writes == 0 {
		return nil
	}
	// One buffer for every record, reused: records are written one at a
	// time, and a queue item can be megabytes.
	rec := encode(append(slices.Grow(j.buf[:0], headerSize+payloadSize(ops)), make([]byte, headerSize)...), ops)
	err := j.write(rec, durable, durable)
	if cap(rec) <= maxKeptBuffer {
		j.buf = rec[:0]
	}
	if err != nil {
		return err
	}
	if durable {
		j.full = false
	}
	if err := j.reclaim(); err != nil {
		return err
	}
	return j.retireHead(j.opts.SegmentSize / 2)
}

// retireHead frees the dead values of a journal that is one segment (the
// head) of at least minSize bytes, under a quarter of it current: a queue
// that drained leaves its items dead in the head, which is never removed.
// It starts a new head and compacts the old one, now the oldest, into it.
func (j *Journal) retireHead(minSize int64) error {
	head := j.segs[len(j.segs)-1]
	if len(j.segs) > 1 || head.size == 0 || head.size < minSize || head.liveBytes >= head.size/4 {
		return nil
	}
	if err := j.roll(); err != nil {
		return err
	}
	j.retiring = true
	defer func() { j.retiring = false }()
	return j.reclaim()
}

// readThrough is the value of key (nil: none) after the sets and deletes
// in before.
func (j *Journal) readThrough(before []Op, key string) ([]byte, error) {
	for i := len(before) - 1; i >= 0; i-- {
		op := before[i]
		if op.Key != key {
			continue
		}
		switch op.Kind {
		case Set:
			return slices.Clone(op.Value), nil
		case Delete:
			return nil, nil
		}
	}
	return j.read(key)
}

func payloadSize(ops []Op) int {
	n := 0
	for _, op := range ops {
		if op.Kind != Get {
			n += 1 + 2*binary.MaxVarintLen64 + len(op.Key) + len(op.Value)
		}
	}
	return n
}

// maxKeptBuffer bounds the record buffer kept between writes: enough for
// the groups of Envoy-sized requests that make most writes; a larger record
// (a request near the item limit) is garbage once written, not held.
const maxKeptBuffer = 1 << 20

// write writes one record (headerSize bytes for its header, then its
// payload) at the head and indexes it. With durable (and Options.Sync) it is
// on disk before write returns; with reserve it is refused when it would
// eat into Options.Reserve (a compaction, which frees space, is not).
func (j *Journal) write(rec []byte, durable, reserve bool) error {
	payload := rec[headerSize:]
	head := j.segs[len(j.segs)-1]
	size := int64(len(rec))
	if head.size > 0 && head.size+size > j.opts.SegmentSize {
		if err := j.roll(); err != nil {
			return err
		}
		head = j.segs[len(j.segs)-1]
	}
	if reserve && j.opts.Reserve > 0 {
		free, ferr := freeBytes(j.dir)
		if ferr == nil && free < size+j.opts.Reserve {
			// Dead values in the head may be what fills the volume (a small
			// volume, a queue that just drained): free them, then look again.
			if err := j.retireHead(0); err != nil {
				return err
			}
			if free, ferr = freeBytes(j.dir); ferr == nil && free < size+j.opts.Reserve {
				j.full = true
				return fmt.Errorf("%w: %d bytes free, %d needed plus %d kept for the queue's reads and deletes", ErrDiskFull, free, size, j.opts.Reserve)
			}
			head = j.segs[len(j.segs)-1]
		}
	}
	if len(payload) > math.MaxUint32 {
		return fmt.Errorf("journal: a record of %d bytes is over the format's 4 GiB", len(payload))
	}
	finish(rec)
	if _, err := head.f.WriteAt(rec, head.size); err != nil {
		// Leave no partial record behind for the next append to follow.
		_ = head.f.Truncate(head.size)
		return fmt.Errorf("journal write: %w", err)
	}
	j.dirty = true
	if durable && j.opts.Sync {
		if err := j.fdatasync(head.f); err != nil {
			// Whether the record reached the disk is unknown: keep it out of
			// the index (the caller is told it failed) and cut it off.
			_ = head.f.Truncate(head.size)
			return fmt.Errorf("journal sync: %w", err)
		}
		j.dirty = false
	}
	if err := j.apply(head, head.size+headerSize, payload); err != nil {
		return err
	}
	head.size += size
	return nil
}

// roll syncs the head and starts a new one: a sync of the new head must
// not be the only thing that makes earlier records durable.
func (j *Journal) roll() error {
	head := j.segs[len(j.segs)-1]
	if j.dirty && j.opts.Sync {
		if err := j.fdatasync(head.f); err != nil {
			return fmt.Errorf("journal sync: %w", err)
		}
		j.dirty = false
	}
	return j.newSegment(head.id + 1)
}

func (j *Journal) newSegment(id uint64) error {
	f, err := os.OpenFile(j.segPath(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := j.syncDir(); err != nil {
		_ = f.Close()
		return err
	}
	j.segs = append(j.segs, &segment{id: id, f: f})
	return nil
}

func (j *Journal) syncDir() error {
	if !j.opts.Sync {
		return nil
	}
	d, err := os.Open(j.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// reclaim removes the oldest segments that hold no live value, and
// compacts the oldest one when few live values pin it (see compactable).
// Oldest first: a segment's deletes may be what keeps an older segment's
// values dead, so a newer segment never goes before an older one.
func (j *Journal) reclaim() error {
	for len(j.segs) > 1 {
		old := j.segs[0]
		if old.live > 0 {
			if !j.compactable(old) {
				return nil
			}
			if err := j.compact(old); err != nil {
				return err
			}
		}
		_ = old.f.Close()
		if err := os.Remove(j.segPath(old.id)); err != nil {
			return err
		}
		// Durable before the next removal: a segment that came back after a
		// crash would bring back values that a removed newer segment deleted.
		if err := j.syncDir(); err != nil {
			return err
		}
		j.segs = j.segs[1:]
	}
	return nil
}

// compactable: the oldest segment is less than a quarter live and at least
// three newer segments exist (or the head is being retired), so copying its
// live values forward frees far more than it writes.
func (j *Journal) compactable(s *segment) bool {
	return (len(j.segs) >= 4 || j.retiring) && s.liveBytes < max(s.size, j.opts.SegmentSize)/4
}

// compact rewrites s's live values at the head, durably, so s can go.
func (j *Journal) compact(s *segment) error {
	var ops []Op
	for key, l := range j.index {
		if l.seg != s {
			continue
		}
		v, err := j.readAt(l)
		if err != nil {
			return err
		}
		ops = append(ops, Op{Kind: Set, Key: key, Value: v})
	}
	slices.SortFunc(ops, func(a, b Op) int { return strings.Compare(a.Key, b.Key) })
	return j.write(encode(make([]byte, headerSize), ops), true, false)
}

func (j *Journal) read(key string) ([]byte, error) {
	l, ok := j.index[key]
	if !ok {
		return nil, nil
	}
	return j.readAt(l)
}

func (*Journal) readAt(l loc) ([]byte, error) {
	v := make([]byte, l.n)
	if _, err := l.seg.f.ReadAt(v, l.off); err != nil {
		return nil, fmt.Errorf("journal read: %w", err)
	}
	return v, nil
}

// fdatasync syncs f and reports how long it took.
func (j *Journal) fdatasync(f *os.File) error {
	start := time.Now()
	err := fdatasync(f)
	j.syncErr = err
	if j.opts.ObserveSync != nil {
		j.opts.ObserveSync(time.Since(start))
	}
	return err
}

// Health is whether the journal is refusing new keys for space (since the
// last refusal, until a new key is written) and the error of its last
// fdatasync (nil once one succeeds).
func (j *Journal) Health() (full bool, syncErr error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.full, j.syncErr
}

// FreeBytes is the space left on the journal's volume for the collector's
// user.
func (j *Journal) FreeBytes() (int64, error) { return freeBytes(j.dir) }

// Sync makes every record written so far durable.
func (j *Journal) Sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	return j.syncLocked()
}

func (j *Journal) syncLocked() error {
	if !j.dirty || !j.opts.Sync {
		return nil
	}
	if err := j.fdatasync(j.segs[len(j.segs)-1].f); err != nil {
		return fmt.Errorf("journal sync: %w", err)
	}
	j.dirty = false
	return nil
}

// Close syncs and closes the files.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	err := j.syncLocked()
	j.closed = true
	j.closeFiles()
	return err
}

func (j *Journal) closeFiles() {
	for _, s := range j.segs {
		_ = s.f.Close()
	}
	_ = j.lock.Close() // releases the flock
}

// ErrLocked is returned by Open when another Journal, in this process or
// another, has the directory open: two writers would interleave records.
var ErrLocked = errors.New("journal directory is in use by another writer")

// lockDir takes an exclusive lock on dir's lock file, without waiting.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600) //nolint:gosec // dir is the configured queue directory
	if err != nil {
		return nil, err
	}
	if err := flock(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %s (%w)", ErrLocked, dir, err)
	}
	return f, nil
}

// Stats describe the journal's files, for tests and telemetry.
type Stats struct {
	Segments  int
	Keys      int
	FileBytes int64
	LiveBytes int64
}

// Stats reports the current files.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := Stats{Segments: len(j.segs), Keys: len(j.index)}
	for _, s := range j.segs {
		st.FileBytes += s.size
		st.LiveBytes += s.liveBytes
	}
	return st
}
