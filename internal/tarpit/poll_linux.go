//go:build linux

package tarpit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readBufSize is the one read buffer the epoll loop shares between all held
// connections.
const readBufSize = 16 << 10

// poller is the epoll loop that reads for every fd-mode session. It is
// level-triggered: a session is watched for EPOLLIN only while it owes
// nothing, so unread pipelined commands wait in the kernel's buffer rather
// than in ours, and a session that owes a reply wakes the loop only if the
// client hangs up (EPOLLRDHUP, EPOLLHUP, EPOLLERR).
type poller struct {
	ep int // epoll descriptor
	ev int // eventfd that wakes the loop for Close
}

func newPoller() (*poller, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	ev, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	e := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ev)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ev, &e); err != nil {
		unix.Close(ep)
		unix.Close(ev)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	return &poller{ep: ep, ev: ev}, nil
}

// fdOf returns the descriptor of a *net.TCPConn. The conn stays open and
// owned by the runtime (it is already non-blocking); File would dup it and
// switch it to blocking mode.
func (p *poller) fdOf(c net.Conn) (int32, bool) {
	if p == nil {
		return -1, false
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return -1, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1, false
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
		return -1, false
	}
	return int32(fd), true
}

// add watches fd for hang-ups only; settle arms EPOLLIN when the session
// wants input.
func (p *poller) add(fd int32) error {
	e := unix.EpollEvent{Events: unix.EPOLLRDHUP, Fd: fd}
	return unix.EpollCtl(p.ep, unix.EPOLL_CTL_ADD, int(fd), &e)
}

func (p *poller) arm(fd int32, in bool) error {
	e := unix.EpollEvent{Events: unix.EPOLLRDHUP, Fd: fd}
	if in {
		e.Events |= unix.EPOLLIN
	}
	return unix.EpollCtl(p.ep, unix.EPOLL_CTL_MOD, int(fd), &e)
}

func (p *poller) del(fd int32) {
	var e unix.EpollEvent // old kernels want a non-nil event for DEL
	unix.EpollCtl(p.ep, unix.EPOLL_CTL_DEL, int(fd), &e)
}

func (p *poller) wake() {
	if p == nil {
		return
	}
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	unix.Write(p.ev, b[:])
}

func (p *poller) close() error {
	if p == nil {
		return nil
	}
	return errors.Join(unix.Close(p.ep), unix.Close(p.ev))
}

// run is the loop. It stops when Close has closed t.quit and woken it.
func (p *poller) run(t *Tarpit) {
	defer t.wg.Done()
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, readBufSize)
	for {
		n, err := unix.EpollWait(p.ep, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			// Cannot happen with valid arguments; without the loop no
			// session can read, so let the limits and Close end them.
			<-t.quit
			return
		}
		for _, e := range events[:n] {
			if e.Fd == int32(p.ev) {
				select {
				case <-t.quit:
					return
				default:
				}
				continue
			}
			hup := e.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
			t.readable(e.Fd, hup, buf)
		}
	}
}

// readable handles an event on fd: it peeks at what the client sent, feeds
// it to the dialog and then consumes exactly the bytes the dialog used. The
// rest (pipelined commands after one that now owes a reply) stays in the
// kernel, so a session never needs a buffer of its own.
func (t *Tarpit) readable(fd int32, hup bool, buf []byte) {
	s := t.lookup(fd)
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The descriptor may have been closed and reused since the event was
	// queued; lookup then finds the new session, which is right, but an
	// event meant for the old one may find the new one owing a reply.
	if s.closed || s.fd != fd {
		return
	}
	if s.owing() || s.reading() {
		// The client hung up while we owe it bytes, or while its
		// message is being read at the tarpit's pace: it left, and so
		// do we.
		if hup {
			s.shutLocked()
		}
		return
	}
	n, err := peek(fd, buf)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return
	case err != nil || n == 0:
		s.shutLocked()
		return
	}
	now := t.now()
	k := s.take(buf[:n], now)
	if s.closed {
		return
	}
	if k > 0 {
		if _, err := unix.Read(int(fd), buf[:k]); err != nil {
			s.shutLocked()
			return
		}
	}
	s.settle(now)
}

// peek reads without consuming. It is a raw recvfrom so that no source
// address is allocated for a connected socket.
func peek(fd int32, buf []byte) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// errAgain is what peekRaw returns when nothing is there to read yet.
var errAgain error = unix.EAGAIN

// peekRaw is peek for the scheduler: a raw system call, which never
// blocks (MSG_DONTWAIT) and so need not tell the runtime (see writeOne).
func peekRaw(fd int32, buf []byte) (int, error) {
	r, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	switch errno {
	case 0:
		return int(r), nil
	case unix.EAGAIN, unix.EINTR:
		return 0, errAgain
	}
	return 0, errno
}

// consumeRaw takes len(buf) bytes that peekRaw saw out of the socket.
func consumeRaw(fd int32, buf []byte) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// shrinkReceive makes the kernel's receive buffer of a held connection
// small: a bot whose message is read at DataPace bytes a Stutter keeps the
// rest in its own send buffer, not in this machine's memory. The kernel
// rounds it up to its minimum (about 2 KiB).
func shrinkReceive(fd int32) {
	unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1024)
}

// writeOne writes one stuttered byte without blocking. again means the
// socket could not take it now. MSG_NOSIGNAL: a client that left gets
// EPIPE, not a signal.
//
// It is a raw system call: MSG_DONTWAIT means it never blocks, so the
// runtime need not be told that the thread is in a system call. With
// unix.Sendto it was told, 19,000 times a second at full load, and the
// runtime's monitor thread, seeing a P in a system call at every batch,
// polled every 20µs: 14% of moat's CPU in a profile of 19,000 held
// connections (see docs/BENCHMARKS.md).
func writeOne(fd int32, b []byte) (again bool, err error) {
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd),
		uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
	switch errno {
	case 0:
		return false, nil
	case unix.EAGAIN, unix.EINTR:
		return true, nil
	}
	return false, errno
}
