package classify

import (
	"testing"
	"time"

	"moat/internal/greylist"
	"moat/internal/reputation"
)

// The hooks hear of the evidence as the engine weighs it: every greylist
// check with its first pass marked, and every trap hit.
func TestHooksHearTheEvidence(t *testing.T) {
	f := newFixture(t, Config{})
	var checks []greylist.Result
	var traps []bool
	var feedback []reputation.Verdict
	f.eng.SetHooks(Hooks{
		Greylist: func(r greylist.Result) { checks = append(checks, r) },
		TrapHit:  func(refused bool) { traps = append(traps, refused) },
		Feedback: func(fb reputation.Feedback) { feedback = append(feedback, fb.Verdict) },
	})
	c := ip("192.0.2.7")
	f.eng.Rcpt(c, "a@example.net", "b@example.org")
	f.clk.Advance(2 * time.Minute)
	f.eng.Rcpt(c, "a@example.net", "b@example.org")
	f.eng.Rcpt(c, "a@example.net", "b@example.org")
	if len(checks) != 3 || checks[0].Outcome != greylist.Defer || !checks[1].FirstPass || checks[1].Delay != 2*time.Minute || checks[2].FirstPass {
		t.Errorf("greylist checks heard: %+v", checks)
	}
	f.eng.Rcpt(ip("198.51.100.9"), "x@example.net", trap)
	if len(traps) != 1 || traps[0] {
		t.Errorf("trap hits heard: %v, want one that blacklisted", traps)
	}
	f.eng.Feedback(reputation.Feedback{IP: c, Verdict: reputation.Ham, Source: "rspamd"})
	if len(feedback) != 1 || feedback[0] != reputation.Ham {
		t.Errorf("feedback heard: %v", feedback)
	}
}
