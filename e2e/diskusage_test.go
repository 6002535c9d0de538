package e2e

import (
	"os"
	"syscall"
)

// diskUsage is the space a file takes on disk (allocated 512-byte blocks),
// or its apparent size where the platform does not say.
func diskUsage(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
