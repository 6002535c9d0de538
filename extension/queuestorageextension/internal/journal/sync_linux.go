//go:build linux

package journal

import (
	"os"
	"syscall"
)

// fdatasync flushes the file's data (not its timestamps): what a record
// needs to survive a crash.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// freeBytes is the space left for an unprivileged writer on dir's volume.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil //nolint:gosec // block counts fit int64
}
