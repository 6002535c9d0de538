//go:build !linux

package journal

import "os"

func fdatasync(f *os.File) error { return f.Sync() }

// freeBytes is not measured outside Linux: no reserve is kept.
func freeBytes(string) (int64, error) { return 1 << 62, nil }

// flock is not taken outside Linux.
func flock(*os.File) error { return nil }
