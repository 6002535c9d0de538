//go:build linux

package journal

import (
	"os"
	"syscall"
)

// fdatasync flushes the file's data (not its timestamps): what a record
// needs to survive a crash.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
