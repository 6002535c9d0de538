package journal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen: whatever a segment file holds (a torn write, a disk error's
// garbage, a file that is not ours), Open neither panics nor allocates
// from a garbage length, keeps every record before the first bad one, and
// leaves a journal that takes writes and reads them back after a reopen.
func FuzzOpen(f *testing.F) {
	valid := func(ops ...Op) []byte {
		rec := encode(make([]byte, headerSize), ops)
		return finish(rec)
	}
	one := valid(Op{Kind: Set, Key: "meta", Value: []byte("m")}, Op{Kind: Set, Key: "1", Value: []byte("item")})
	two := valid(Op{Kind: Delete, Key: "1"})
	f.Add(one)
	f.Add(append(append([]byte{}, one...), two...))
	f.Add(append(append([]byte{}, one...), two[:5]...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, seg []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "0000000000000001"+segSuffix)
		if err := os.WriteFile(path, seg, 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		rec := j.Recovered()
		kept, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(kept))+rec.TornBytes != int64(len(seg)) || !bytes.HasPrefix(seg, kept) {
			t.Fatalf("kept %d bytes (a prefix: %v) and cut %d of %d", len(kept), bytes.HasPrefix(seg, kept), rec.TornBytes, len(seg))
		}
		if err = j.Batch([]Op{{Kind: Set, Key: "after", Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
		keys := j.Stats().Keys
		if err = j.Close(); err != nil {
			t.Fatal(err)
		}
		j, err = Open(dir, Options{})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer j.Close()
		ops := []Op{{Kind: Get, Key: "after"}}
		if err := j.Batch(ops); err != nil || string(ops[0].Value) != "v" {
			t.Fatalf("after a reopen: %q, %v", ops[0].Value, err)
		}
		if j.Stats().Keys != keys || j.Recovered().TornBytes != 0 {
			t.Fatalf("reopen: %d keys (want %d), %d torn bytes", j.Stats().Keys, keys, j.Recovered().TornBytes)
		}
	})
}
