//go:build unix

package admin

import (
	"net"
	"sync"
	"syscall"
)

var umaskMu sync.Mutex

// listenUnixPrivate creates the socket with umask 077 so that no other
// user can connect to it even for the instant before the chmod.
func listenUnixPrivate(path string) (net.Listener, error) {
	umaskMu.Lock()
	defer umaskMu.Unlock()
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}
