package traps

// Mining: spam bots reveal the addresses they target. A bot in the tarpit
// hands its whole target list to what it thinks is an open relay; a bot
// that reaches the backend during a hand-off gets 550 5.1.1 for the
// addresses that do not exist; the backend's own log shows the same
// rejections for the hosts moat let through. An address that several
// unrelated hosts ask for, and that the backend never accepted, is a
// guessed or harvested address that no person uses: a trap candidate.
//
// Hosts are counted only when moat itself saw them: a tarpit RCPT, a
// backend reply during a hand-off, or a log line about a client that moat
// has a record of. A log line about a host moat never saw counts for
// nothing, so lines that are not what they seem cannot make a candidate.
//
// A candidate becomes a trap only after a fresh RCPT probe against the
// backend says "no such mailbox" (550 5.1.1): a trap that is a real
// mailbox would blacklist that person's correspondents, and a full mailbox
// or a policy refusal says nothing about whether the mailbox exists.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"moat/internal/smtp"
)

// Promotion is the outcome of Promote.
type Promotion struct {
	Addr     string   `json:"addr"`
	Promoted bool     `json:"promoted"`
	Reason   string   `json:"reason"` // why not, or the probe's answer
	Evidence Evidence `json:"evidence"`
}

// ErrNoProbe is returned by Promote when the miner has no way to ask the
// backend.
var ErrNoProbe = errors.New("traps: no backend probe configured: cannot check the address before promoting it")

// Promote makes addr a trap after the backend, asked with a probe, says it
// has no such mailbox. A backend that accepts it marks it real, forever a
// non-trap; a backend that is unsure (4xx, down) leaves it as it was.
// Every promotion is logged with its evidence.
func (m *Miner) Promote(ctx context.Context, addr string) (Promotion, error) {
	n, err := smtp.Normalize(addr)
	if err != nil || smtp.Domain(n) == "" {
		return Promotion{}, fmt.Errorf("traps: %q is not an address (want local@domain)", addr)
	}
	p := Promotion{Addr: n}
	if m.set.Is(n) {
		p.Reason = "already a trap"
		return p, nil
	}
	e, ok, err := m.get(n)
	if err != nil {
		return p, err
	}
	if ok {
		p.Evidence = e
	}
	if e.Real {
		p.Reason = "the backend accepted it on " + e.Last.UTC().Format(time.RFC3339) + ": a real mailbox"
		return p, nil
	}
	if m.cfg.Probe == nil {
		return p, ErrNoProbe
	}
	res, err := m.cfg.Probe.Probe(ctx, n)
	now := m.clock.Now()
	switch {
	case err == nil && res.Verdict == ProbeReal:
		m.mu.Lock()
		cur, ok2, _ := m.get(n)
		if ok2 || m.newRecord() {
			if !ok2 {
				cur = Evidence{Addr: n, First: now}
			}
			cur.Real, cur.Last = true, now
			err = m.put(cur, realTTL)
		}
		m.mu.Unlock()
		p.Reason = "the backend accepts it (" + res.Reply + "): a real mailbox, not promoted"
		m.log.Info("traps: not promoted: real mailbox", "addr", n, "reply", res.Reply, "evidence", p.Evidence.String())
		return p, err
	case err != nil || res.Verdict != ProbeUnknown:
		why := res.Reply
		if err != nil {
			why = err.Error()
		}
		if ok {
			m.mu.Lock()
			if cur, ok2, _ := m.get(n); ok2 {
				cur.Probed, cur.ProbeReply = now, why
				m.put(cur, evidenceTTL)
			}
			m.mu.Unlock()
		}
		p.Reason = "the backend's answer is not conclusive (" + why + "): not promoted now"
		return p, nil
	}
	if _, err := m.set.Add(n); err != nil {
		return p, err
	}
	m.mu.Lock()
	if ok {
		m.st.Delete(kindCandidate, n)
		m.records.Add(-1)
	}
	m.mu.Unlock()
	ctx2, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.st.Flush(ctx2)
	p.Promoted, p.Reason = true, "the backend has no such mailbox ("+res.Reply+")"
	m.log.Info("traps: promoted", "addr", n, "probe", res.Reply, "hosts", addrStrings(e.Hosts),
		"sources", e.Sources, "first", e.First, "last", e.Last)
	return p, nil
}

func addrStrings(l []netip.Addr) []string {
	out := make([]string, len(l))
	for i, a := range l {
		out[i] = a.String()
	}
	return out
}

// Run does the miner's slow work until ctx is done: promotions in "promote"
// mode (each one a probe of the backend), harvest reports from the tarpit,
// and an hourly sweep that retries candidates whose probe was not
// conclusive.
func (m *Miner) Run(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-m.jobs:
			m.do(ctx, j)
		case <-t.C:
			if err := m.recount(); err != nil {
				m.log.Warn("traps: mining sweep", "err", err.Error())
				continue
			}
			if n := m.dropped.Swap(0); n > 0 {
				m.log.Warn("traps: mining work dropped (queue full)", "jobs", n)
			}
			if m.cfg.Auto != AutoPromote {
				continue
			}
			cs, err := m.Candidates()
			if err != nil {
				m.log.Warn("traps: mining sweep", "err", err.Error())
				continue
			}
			now := m.clock.Now()
			for _, c := range cs {
				if now.Sub(c.Probed) >= reprobe {
					m.enqueue(job{promote: c.Addr})
				}
			}
		}
	}
}

func (m *Miner) do(ctx context.Context, j job) {
	if j.harvest != nil {
		m.cfg.Harvested(*j.harvest, j.client)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	p, err := m.Promote(pctx, j.promote)
	if err != nil {
		m.log.Warn("traps: promotion", "addr", j.promote, "err", err.Error())
	} else if !p.Promoted {
		m.log.Debug("traps: candidate not promoted", "addr", p.Addr, "reason", p.Reason)
	}
}
