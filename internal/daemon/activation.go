package daemon

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// listenSMTP returns the SMTP listener: the socket systemd passed when
// moat was started by socket activation (moat.socket binds port 25, so
// moat needs no privilege at all), else a new one on addr. activated says
// which.
//
// systemd's protocol (sd_listen_fds(3)) is three variables: LISTEN_PID,
// the process they are for; LISTEN_FDS, how many descriptors follow 0, 1
// and 2; LISTEN_FDNAMES, their names (FileDescriptorName=). moat takes the
// one named "smtp", or the only one.
func listenSMTP(addr string) (ln net.Listener, activated bool, err error) {
	fds, err := listenFDs()
	if err != nil {
		return nil, false, err
	}
	if len(fds) == 0 {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, false, fmt.Errorf("listen %s: %w", addr, err)
		}
		return ln, false, nil
	}
	var f *os.File
	for _, fd := range fds {
		if fd.Name() == "smtp" || len(fds) == 1 {
			f = fd
		} else {
			fd.Close()
		}
	}
	if f == nil {
		return nil, false, fmt.Errorf("socket activation: no socket named \"smtp\" among the %d systemd passed (set FileDescriptorName=smtp in the .socket unit)", len(fds))
	}
	defer f.Close() // the listener has its own copy
	ln, err = net.FileListener(f)
	if err != nil {
		return nil, false, fmt.Errorf("socket activation: descriptor %d (%s): %w", f.Fd(), f.Name(), err)
	}
	return ln, true, nil
}

// firstListenFD is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const firstListenFD = 3

// listenFDs returns the descriptors systemd passed to this process, named,
// and unsets the variables so that no child takes them for its own.
func listenFDs() ([]*os.File, error) {
	pid, n, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	if pid == "" || n == "" {
		return nil, nil
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	if p, err := strconv.Atoi(pid); err != nil || p != os.Getpid() {
		return nil, nil // meant for another process
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 0 || count > 64 {
		return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q: not a count of descriptors", n)
	}
	nameList := strings.Split(names, ":")
	files := make([]*os.File, count)
	for i := range count {
		fd := firstListenFD + i
		syscall.CloseOnExec(fd)
		name := "LISTEN_FD_" + strconv.Itoa(fd)
		if i < len(nameList) && nameList[i] != "" {
			name = nameList[i]
		}
		files[i] = os.NewFile(uintptr(fd), name)
	}
	return files, nil
}
