package ledger

import (
	"net/netip"
	"sync"
)

// tabs are the open accounts of held connections, keyed by whatever names
// a connection to the caller (the tarpit's Conn): the transaction being
// sent and the messages told so far, until the connection ends and Record
// adds them up. A connection has a tab only once it sent a MAIL or ended
// a message, so a bot that never does costs nothing here; a tab is
// bounded like a record.
type tabs struct {
	mu   sync.Mutex
	open map[any]*tab
}

type tab struct {
	s      Session
	counts Counts
	tx     Message
	inTx   bool
}

// tab returns key's tab, opening it when create is set; nil otherwise.
// Called with tabs.mu held.
func (l *Ledger) tab(key any, create bool) *tab {
	t := l.tabs.open[key]
	if t == nil && create {
		t = &tab{s: Session{Start: l.cfg.Clock.Now()}}
		l.tabs.open[key] = t
	}
	return t
}

// Moved opens key's tab with the transaction a session brought from the
// grey dialog: its sender and the recipients it was told 250 for.
func (l *Ledger) Moved(key any, sender string, rcpts []string) {
	l.tabs.mu.Lock()
	defer l.tabs.mu.Unlock()
	t := l.tab(key, true)
	t.mail(sender)
	t.tx.Before = true
	for _, r := range rcpts {
		t.rcpt(r)
	}
}

// Mail starts a transaction.
func (l *Ledger) Mail(key any, sender string) {
	l.tabs.mu.Lock()
	defer l.tabs.mu.Unlock()
	l.tab(key, true).mail(sender)
}

// Rcpt adds a recipient to the transaction.
func (l *Ledger) Rcpt(key any, rcpt string) {
	l.tabs.mu.Lock()
	defer l.tabs.mu.Unlock()
	if t := l.tab(key, false); t != nil {
		t.rcpt(rcpt)
	}
}

// Told ends the transaction with what its message was told.
func (l *Ledger) Told(key any, told Told) {
	if told >= numTold {
		return
	}
	l.tabs.mu.Lock()
	defer l.tabs.mu.Unlock()
	t := l.tab(key, true)
	t.counts[told]++
	m := t.tx
	m.Told = told.String()
	if len(t.s.Messages) < MaxMessages {
		t.s.Messages = append(t.s.Messages, m)
	} else {
		t.s.More++
	}
	t.tx, t.inTx = Message{}, false
}

// Close forgets key's tab and returns what Add records of it; ok is false
// when there is nothing to record (no message ended).
func (l *Ledger) Close(key any) (s Session, counts Counts, ok bool) {
	l.tabs.mu.Lock()
	t := l.tabs.open[key]
	delete(l.tabs.open, key)
	l.tabs.mu.Unlock()
	if t == nil || t.counts == (Counts{}) {
		return s, counts, false
	}
	t.s.End = l.cfg.Clock.Now()
	return t.s, t.counts, true
}

func (t *tab) mail(sender string) {
	t.tx, t.inTx = Message{Sender: Clean(sender), Rcpts: nil}, true
}

func (t *tab) rcpt(r string) {
	if !t.inTx {
		return
	}
	if len(t.tx.Rcpts) < MaxRcpts {
		t.tx.Rcpts = append(t.tx.Rcpts, Clean(r))
	} else {
		t.tx.More++
	}
}

// Record is Close and Add in one: the tarpit's Done event, which must not
// block, runs it on a goroutine of its own.
func (l *Ledger) Record(key any, client netip.Addr) error {
	s, counts, ok := l.Close(key)
	if !ok {
		return nil
	}
	return l.Add(client, s, counts)
}
