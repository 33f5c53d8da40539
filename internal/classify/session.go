package classify

import (
	"net/netip"

	"moat/internal/store"
)

// Data judges a DATA command of a session whose recipients the backend
// accepted: the host's class is read once more, since it may have turned
// black (another connection hit a trap, the operator) after the last RCPT.
// Accept lets the message go to the backend; Black moves the session to
// the tarpit; Defer (the store could not be asked) answers 4xx, since moat
// cannot know whether the host turned black.
func (e *Engine) Data(client netip.Addr) (Decision, error) {
	v, err := e.Classify(client)
	switch {
	case err != nil:
		return Decision{Action: Defer, Reason: "store unavailable"}, err
	case v.Class == store.Black:
		return Decision{Action: Black, Source: v.Source, Reason: v.Reason}, nil
	}
	return Decision{Action: Accept}, nil
}
