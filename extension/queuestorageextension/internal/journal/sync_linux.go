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

// flock takes an exclusive advisory lock on f, failing at once if it is
// held (by another open of the file, in this process or another).
func flock(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) }
