//go:build unix

package logfollow

import (
	"os"
	"syscall"
)

// fileID is the file's inode number: what tells, after a restart, whether
// the file at the path is still the one we stopped in.
func fileID(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
