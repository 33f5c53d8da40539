//go:build !linux

package tarpit

import (
	"errors"
	"net"
)

// poller is absent where there is no epoll: newPoller returns nil and every
// connection takes the goroutine path (stream.go), paced by the same
// scheduler. The methods accept the nil receiver.
type poller struct{}

func newPoller() (*poller, error)             { return nil, nil }
func (p *poller) fdOf(net.Conn) (int32, bool) { return -1, false }
func (p *poller) add(int32) error             { return nil }
func (p *poller) arm(int32, bool) error       { return nil }
func (p *poller) del(int32)                   {}
func (p *poller) wake()                       {}
func (p *poller) close() error                { return nil }
func (p *poller) run(*Tarpit)                 {}
func writeOne(int32, []byte) (bool, error)    { return false, nil }
func peekRaw(int32, []byte) (int, error)      { return 0, errAgain }
func consumeRaw(int32, []byte) error          { return nil }
func shrinkReceive(int32)                     {}

var errAgain = errors.New("tarpit: no descriptors here")
