package classify

import (
	"fmt"
	"net/netip"
	"time"

	"moat/internal/reputation"
	"moat/internal/store"
)

// FeedbackResult says what a verdict did.
type FeedbackResult struct {
	IP      string  `json:"ip"`
	Karma   float64 `json:"karma"`
	Class   string  `json:"class"`
	Changed bool    `json:"changed"`
	Reason  string  `json:"reason"`
}

// Feedback weighs a content filter's verdict on a message from fb.IP. The
// host's karma moves (spam down, ham up, both decaying with the
// half-life); a white host whose karma falls below grey_below is grey
// again (greylisted, never rejected), and any host whose karma falls below
// black_below is black. Hosts on the configuration's lists and hosts an
// operator set by hand keep their class: the operator's word stands.
func (e *Engine) Feedback(fb reputation.Feedback) (FeedbackResult, error) {
	pol := reputation.DefaultKarma()
	if r := e.rep(); r != nil {
		pol = r.Karma
	}
	addr := fb.IP.Unmap()
	if !addr.IsValid() {
		return FeedbackResult{}, fmt.Errorf("feedback: no client address")
	}
	if e.hooks.Feedback != nil {
		e.hooks.Feedback(fb)
	}
	p := store.HostPrefix(addr)
	key := hostKey(p)
	now := e.clock.Now()
	k, err := e.addKarma(key, pol, fb.Verdict, now)
	if err != nil {
		return FeedbackResult{}, err
	}
	what := fmt.Sprintf("%s, karma %.2f", fb, k.Score)
	res := FeedbackResult{IP: addr.String(), Karma: k.Score, Reason: what}

	v, err := e.Classify(addr)
	if err != nil {
		return res, err
	}
	res.Class = v.Class.String()
	h, stored, err := e.st.Host(p)
	if err != nil {
		return res, err
	}
	operator := stored && SourceOf(h) == store.SourceOperator
	target, ttl := v.Class, time.Duration(0)
	if fb.Verdict == reputation.Spam && !v.Static && !operator {
		switch {
		case k.Score < pol.BlackBelow && v.Class != store.Black:
			target, ttl = store.Black, e.cfg().BlackTTL
		case k.Score < pol.GreyBelow && v.Class == store.White && stored:
			target, ttl = store.Grey, e.cfg().GreyTTL
			if ttl <= 0 {
				ttl = 24 * time.Hour
			}
		}
	}
	if target == v.Class {
		e.record(p, Event{At: now, Reason: "feedback: " + what})
		return res, nil
	}
	reason := "feedback: " + what
	nh, wrote, err := e.setHost(p, target, store.SourceFeedback, reason, ttl, true)
	if err != nil {
		return res, err
	}
	if !wrote {
		// Stronger evidence stands; the verdict is kept in the history.
		e.record(p, Event{At: now, Reason: reason})
		return res, nil
	}
	res.Class, res.Changed, res.Reason = nh.Class.String(), true, reason
	return res, nil
}

// addKarma weighs one verdict into key's karma record.
func (e *Engine) addKarma(key string, pol reputation.KarmaPolicy, v reputation.Verdict, now time.Time) (reputation.Karma, error) {
	e.ev.kmu.Lock()
	defer e.ev.kmu.Unlock()
	var k reputation.Karma
	if b, ok, err := e.st.Get(karmaKind, key); err != nil {
		return k, err
	} else if ok {
		k, _ = reputation.UnmarshalKarma(b)
	}
	k = pol.Add(k, v, now)
	keep := 10 * pol.HalfLife // by then the karma is below a thousandth of itself
	return k, e.st.Put(karmaKind, key, k.Marshal(), now.Add(keep))
}

// badKarma reports a host whose filter verdicts put its karma below
// grey_below: a greylist pass lets its message through but does not make
// it white again, or one old triplet would undo every spam verdict.
func (e *Engine) badKarma(client netip.Addr) (string, bool) {
	r := e.rep()
	if r == nil {
		return "", false
	}
	k, ok, err := e.KarmaOf(client)
	if err != nil || !ok || k >= r.Karma.GreyBelow {
		return "", false
	}
	return fmt.Sprintf("karma %.2f below %g", k, r.Karma.GreyBelow), true
}

// KarmaOf returns addr's karma decayed to now.
func (e *Engine) KarmaOf(addr netip.Addr) (float64, bool, error) {
	pol := reputation.DefaultKarma()
	if r := e.rep(); r != nil {
		pol = r.Karma
	}
	b, ok, err := e.st.Get(karmaKind, hostKey(store.HostPrefix(addr)))
	if err != nil || !ok {
		return 0, false, err
	}
	k, err := reputation.UnmarshalKarma(b)
	if err != nil {
		return 0, false, err
	}
	return k.Now(e.clock.Now(), pol.HalfLife), true, nil
}
