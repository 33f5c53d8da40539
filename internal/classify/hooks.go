package classify

import (
	"moat/internal/greylist"
	"moat/internal/reputation"
)

// Hooks let moat's metrics hear of the evidence the engine weighs. Nil
// funcs are skipped. They are called on the deciding goroutine (a
// session's, a log follower's), so they must be cheap and must not block.
type Hooks struct {
	// TrapHit: a trap was named in MAIL or RCPT, or found in the mail
	// log; refused when the host is vouched for (not blacklisted).
	TrapHit func(refused bool)
	// Greylist: a grey host's RCPT was checked against the greylist.
	Greylist func(r greylist.Result)
	// DNSBL: the DNS lists answered for a connecting host, and the
	// verdict their score led to.
	DNSBL func(sc reputation.Score, v Verdict)
	// Feedback: a content filter's verdict was weighed.
	Feedback func(fb reputation.Feedback)
}

// SetHooks installs h. Call it before the engine is used: the hooks are
// read without a lock.
func (e *Engine) SetHooks(h Hooks) { e.hooks = h }
