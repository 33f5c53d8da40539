package dialog

import "moat/internal/store"

// Verdict says how a grey session went. When several things happen in one
// session the most telling is kept: the constants are in that order, so a
// pass outranks the greylisting before it, and a trap hit everything.
type Verdict uint8

const (
	Closed             Verdict = iota // the client went away
	Quit                              // the client said QUIT
	Greylisted                        // a RCPT was deferred by the greylist
	TempFail                          // the store could not be asked: deferred
	Refused                           // a trap named through a vouched-for host: refused, not blacklisted
	Passed                            // a RCPT passed the greylist: the backend took part
	BackendUnavailable                // the backend could not be reached or refused: deferred
	BackendLost                       // the backend went away or failed mid-session: deferred
	Timeout                           // the client was idle too long
	TooManyErrors                     // max_errors
	TooManyCommands                   // max_commands
	BareNewline                       // a bare CR, LF or NUL in DATA: refused with 521
	Error                             // an I/O or TLS error
	Listed                            // black by the DNS lists: to the tarpit
	Black                             // black by another connection or the operator: to the tarpit
	EarlyTalker                       // spoke before the banner: black, to the tarpit
	Trap                              // named a trap: black, to the tarpit
	Smuggling                         // a lax end of data in DATA: black, refused with 521
)

var verdictNames = [...]string{
	Closed:             "closed",
	Quit:               "quit",
	Greylisted:         "greylisted",
	TempFail:           "tempfail",
	Refused:            "refused",
	Passed:             "passed",
	BackendUnavailable: "backend-unavailable",
	BackendLost:        "backend-lost",
	Timeout:            "timeout",
	TooManyErrors:      "too-many-errors",
	TooManyCommands:    "too-many-commands",
	BareNewline:        "bare-newline",
	Error:              "error",
	Listed:             "dnsbl",
	Black:              "black",
	EarlyTalker:        "early-talker",
	Trap:               "trap",
	Smuggling:          "smuggling",
}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "unknown"
}

// Black reports whether the session ended with its host black: the rest
// of the session belongs to the tarpit (when it has room), and so do the
// host's next connections.
func (v Verdict) Black() bool { return v >= Listed }

// Would says, in observe mode, what enforce mode would have done with the
// session: its verdict ("greylisted", "passed", "refused", …), or for a
// host it would have held "tarpit (SOURCE)", the evidence that made it
// black ("tarpit (trap)", "tarpit (dnsbl)", "tarpit (operator)").
func (r Result) Would() string {
	if !r.WouldVerdict.Black() || r.WouldVerdict == Smuggling {
		// A smuggler's message is refused in both modes.
		return r.WouldVerdict.String()
	}
	src := r.WouldSource
	switch {
	case src != store.SourceUnknown:
	case r.WouldVerdict == Trap:
		src = store.SourceTrap
	case r.WouldVerdict == EarlyTalker:
		src = store.SourceEarlyTalk
	case r.WouldVerdict == Listed:
		src = store.SourceDNSBL
	}
	return "tarpit (" + src.String() + ")"
}
