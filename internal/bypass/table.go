// Package bypass lets white hosts reach the real mail server without
// passing through moat, the way OpenBSD's spamd lets pf send only the
// others to it: moat keeps the white addresses and networks in nftables
// sets of a table of its own, and a rule there redirects connections from
// them for moat's listening port to the mail server's bypass listener (a
// second smtpd without the PROXY header: the server sees the real client
// itself). Everyone else reaches moat as before.
//
// The kernel does the work: an element carries a timeout equal to the
// host's remaining white time and leaves by itself; a connection is
// redirected or not at its first packet, so removing an element never cuts
// one that is open. The table stays when moat stops, so white hosts keep
// their mail flowing while moat restarts; at start moat brings it back in
// step with the store (Mirror).
//
// The package talks netlink (github.com/google/nftables), needs
// CAP_NET_ADMIN, and never touches a table other than its own: it creates,
// rewrites and deletes only the table its Config names, and refuses to
// delete one that does not carry its rules.
package bypass

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/google/nftables"
)

// Config says which connections the kernel sends where.
type Config struct {
	// Table is the name of moat's table (family inet).
	Table string
	// Listen is moat's listening address. Only connections to its port
	// are redirected, and only to it: an unspecified address (":25",
	// "0.0.0.0:25") means any address of this host.
	Listen netip.AddrPort
	// Port is the mail server's bypass listener on this host.
	Port uint16
}

// validate checks what the kernel would refuse less clearly.
func (c Config) validate() error {
	switch {
	case c.Table == "" || len(c.Table) > 255:
		return errors.New("bypass: table name: want 1 to 255 characters")
	case c.Listen.Port() == 0:
		return errors.New("bypass: moat's listen port is 0")
	case c.Port == 0:
		return errors.New("bypass: port: want the mail server's bypass listener port")
	case c.Port == c.Listen.Port():
		return fmt.Errorf("bypass: port %d is moat's own listen port: want the mail server's bypass listener", c.Port)
	}
	return nil
}

// Element is one white address or network with how long it stays in the
// kernel's set (0: until moat removes it).
type Element struct {
	Prefix  netip.Prefix
	Timeout time.Duration
}

// Table is moat's nftables table. Its methods are safe for concurrent use.
type Table struct {
	cfg   Config
	conn  *nftables.Conn
	tab   *nftables.Table
	set   [4]*nftables.Set   // hosts4, nets4, hosts6, nets6 (rules.go)
	chain [3]*nftables.Chain // prerouting, output, guard

	mu sync.Mutex // one batch at a time; guards hosts and nets
	// What this process put in the kernel, with the element's end (zero:
	// none). It spares a netlink round trip for hosts that are not in a
	// set (every grey host's change) and tells Put whether to replace.
	hosts map[netip.Prefix]time.Time
	nets  map[netip.Prefix]time.Time
}

// Open connects to the kernel's nf_tables. It changes nothing: Install
// (or Sync, which installs when needed) writes the table. netns is the
// file descriptor of a network namespace to work in, 0 for the current
// one.
func Open(cfg Config, netns int) (*Table, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var opts []nftables.ConnOption
	if netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(netns))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("bypass: netlink: %w", err)
	}
	t := &Table{
		cfg:   cfg,
		conn:  conn,
		tab:   &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet},
		hosts: map[netip.Prefix]time.Time{},
		nets:  map[netip.Prefix]time.Time{},
	}
	t.set, t.chain = t.layout()
	return t, nil
}

// Name is how nft names the table: "inet moat".
func (t *Table) Name() string { return "inet " + t.cfg.Table }

// Install creates the table, its sets and chains if they are missing and
// writes its rules afresh, in one transaction: the elements already in
// the sets stay, and no packet sees a chain half written.
func (t *Table) Install() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.install()
}

func (t *Table) install() error {
	c := t.conn
	c.AddTable(t.tab)
	for _, s := range t.set {
		if err := c.AddSet(s, nil); err != nil {
			return t.fail("install", err)
		}
	}
	for _, ch := range t.chain {
		c.AddChain(ch)
		c.FlushChain(ch)
	}
	for _, r := range t.rules() {
		c.AddRule(r.rule)
	}
	if err := c.Flush(); err != nil {
		return t.fail("install", err)
	}
	return nil
}

// Delete removes the table, its sets and rules: white hosts reach moat
// again. A missing table is no error; a table of that name that does not
// carry moat's rules is left alone and reported.
func (t *Table) Delete() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.retire(); err != nil {
		return err
	}
	clear(t.hosts)
	clear(t.nets)
	return nil
}

// Retire deletes the table called name if it carries moat's rules: moat
// runs with the bypass off, and a table an earlier run left would go on
// sending white hosts past it. It reports whether there was one.
func Retire(name string) (bool, error) {
	conn, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("bypass: netlink: %w", err)
	}
	t := &Table{cfg: Config{Table: name}, conn: conn, tab: &nftables.Table{Name: name, Family: nftables.TableFamilyINet}}
	t.set, t.chain = t.layout()
	return t.retire()
}

func (t *Table) retire() (bool, error) {
	if _, err := t.conn.ListTableOfFamily(t.cfg.Table, nftables.TableFamilyINet); err != nil {
		if notFound(err) {
			return false, nil
		}
		return false, t.fail("delete", err)
	}
	if !t.ours() {
		return false, fmt.Errorf("bypass: table %s does not carry moat's rules: not deleting it (rename bypass.table or delete it yourself)", t.Name())
	}
	t.conn.DelTable(t.tab)
	if err := t.conn.Flush(); err != nil {
		return false, t.fail("delete", err)
	}
	return true, nil
}

// ours reports a table whose chains carry at least one of moat's rules.
func (t *Table) ours() bool {
	for _, ch := range t.chain {
		rs, err := t.conn.GetRules(t.tab, ch)
		if err != nil {
			continue
		}
		for _, r := range rs {
			if isOurs(r) {
				return true
			}
		}
	}
	return false
}

// Check verifies that the table, its sets and exactly moat's rules are in
// the kernel. The error says what is missing.
func (t *Table) Check() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.check()
}

func (t *Table) check() error {
	if _, err := t.conn.ListTableOfFamily(t.cfg.Table, nftables.TableFamilyINet); err != nil {
		if notFound(err) {
			return fmt.Errorf("bypass: table %s is missing", t.Name())
		}
		return t.fail("check", err)
	}
	have, err := t.conn.GetSets(t.tab)
	if err != nil {
		return t.fail("check", err)
	}
	for _, s := range t.set {
		if !slices.ContainsFunc(have, func(h *nftables.Set) bool {
			return h.Name == s.Name && h.HasTimeout && h.Interval == s.Interval && h.KeyType.Name == s.KeyType.Name
		}) {
			return fmt.Errorf("bypass: table %s: set %s is missing or not as moat makes it", t.Name(), s.Name)
		}
	}
	want := map[string][]string{}
	for _, r := range t.rules() {
		want[r.rule.Chain.Name] = append(want[r.rule.Chain.Name], r.comment)
	}
	for _, ch := range t.chain {
		rs, err := t.conn.GetRules(t.tab, ch)
		if err != nil {
			if notFound(err) {
				return fmt.Errorf("bypass: table %s: chain %s is missing", t.Name(), ch.Name)
			}
			return t.fail("check", err)
		}
		var got []string
		for _, r := range rs {
			got = append(got, comment(r))
		}
		if !slices.Equal(got, want[ch.Name]) {
			return fmt.Errorf("bypass: table %s: chain %s does not hold moat's rules for this configuration (want %q, found %q)",
				t.Name(), ch.Name, want[ch.Name], got)
		}
	}
	return nil
}

// Sizes is how many elements the kernel's sets hold now.
type Sizes struct {
	Hosts4 int `json:"hosts_v4"`
	Hosts6 int `json:"hosts_v6"`
	Nets4  int `json:"nets_v4"`
	Nets6  int `json:"nets_v6"`
}

// Count reads the sizes of the sets from the kernel.
func (t *Table) Count() (Sizes, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sz Sizes
	n := []*int{&sz.Hosts4, &sz.Nets4, &sz.Hosts6, &sz.Nets6}
	for i, s := range t.set {
		es, err := t.conn.GetSetElements(s)
		if err != nil {
			return sz, t.fail("count", err)
		}
		for _, e := range es {
			if !e.IntervalEnd {
				*n[i]++
			}
		}
	}
	return sz, nil
}

// Put adds p to its set, or gives it its new timeout if it is there.
func (t *Table) Put(e Element) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := e.Prefix
	end := endOf(e.Timeout)
	if p.IsSingleIP() {
		old, there := t.hosts[p]
		if there && near(old, end) {
			return nil
		}
		s := t.hostSet(p.Addr())
		if there {
			// Replace: a delete and an add in one transaction, so
			// the host is never out of the set (an existing element
			// keeps its old timeout on kernels before 6.10).
			if err := t.conn.SetDeleteElements(s, []nftables.SetElement{hostElem(p.Addr(), 0)}); err != nil {
				return t.fail("put "+p.String(), err)
			}
		}
		if err := t.conn.SetAddElements(s, []nftables.SetElement{hostElem(p.Addr(), e.Timeout)}); err != nil {
			return t.fail("put "+p.String(), err)
		}
		if err := t.conn.Flush(); err != nil {
			if !there {
				return t.fail("put "+p.String(), err)
			}
			// It had left the kernel already (timed out, deleted
			// by hand): add it alone.
			if err := t.conn.SetAddElements(s, []nftables.SetElement{hostElem(p.Addr(), e.Timeout)}); err != nil {
				return t.fail("put "+p.String(), err)
			}
			if err := t.conn.Flush(); err != nil {
				return t.fail("put "+p.String(), err)
			}
		}
		t.hosts[p] = end
		return nil
	}
	if old, there := t.nets[p]; there && near(old, end) {
		return nil
	}
	nets := maps(t.nets)
	nets[p] = end
	return t.writeNets(nets, p.Addr().Is4())
}

// Remove takes p out of its set. A prefix that is not there is no error.
func (t *Table) Remove(p netip.Prefix) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.IsSingleIP() {
		end, there := t.hosts[p]
		if !there {
			return nil
		}
		delete(t.hosts, p)
		if !end.IsZero() && !end.After(time.Now()) {
			return nil // the kernel let it go by itself
		}
		s := t.hostSet(p.Addr())
		if err := t.conn.SetDeleteElements(s, []nftables.SetElement{hostElem(p.Addr(), 0)}); err != nil {
			return t.fail("remove "+p.String(), err)
		}
		if err := t.conn.Flush(); err != nil && !notFound(err) {
			return t.fail("remove "+p.String(), err)
		}
		return nil
	}
	if _, there := t.nets[p]; !there {
		return nil
	}
	nets := maps(t.nets)
	delete(nets, p)
	return t.writeNets(nets, p.Addr().Is4())
}

// Nets returns the networks this process put in the sets.
func (t *Table) Nets() []netip.Prefix {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]netip.Prefix, 0, len(t.nets))
	for p := range t.nets {
		out = append(out, p)
	}
	return out
}

// Sync makes the kernel hold exactly want: it installs the table if any
// part of it is missing or not as this configuration wants, then adds,
// renews and removes elements. Hosts whose timeout in the kernel is within
// a minute of the wanted one are left as they are.
func (t *Table) Sync(want []Element) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.check(); err != nil {
		if err := t.install(); err != nil {
			return err
		}
	}
	wantHosts := map[netip.Prefix]time.Time{}
	wantNets := map[netip.Prefix]time.Time{}
	for _, e := range want {
		p := e.Prefix
		if !p.IsValid() {
			continue
		}
		if p.IsSingleIP() {
			wantHosts[p] = endOf(e.Timeout)
		} else {
			wantNets[p] = endOf(e.Timeout)
		}
	}
	have, err := t.kernelHosts()
	if err != nil {
		return err
	}
	var ops []hostOp
	for p, end := range wantHosts {
		if old, ok := have[p]; !ok || !near(old, end) {
			ops = append(ops, hostOp{p: p, del: ok, add: true, end: end})
		}
	}
	for p := range have {
		if _, ok := wantHosts[p]; !ok {
			ops = append(ops, hostOp{p: p, del: true})
		}
	}
	if err := t.batchHosts(ops); err != nil {
		return err
	}
	t.hosts = wantHosts
	for _, v4 := range []bool{true, false} {
		if err := t.writeNets(wantNets, v4); err != nil {
			return err
		}
	}
	return nil
}

// batchSize bounds the elements of one netlink transaction, well inside
// the socket's send buffer.
const batchSize = 1000

func (t *Table) batchHosts(ops []hostOp) error {
	sort.Slice(ops, func(i, j int) bool { return ops[i].p.Addr().Less(ops[j].p.Addr()) })
	for len(ops) > 0 {
		n := min(len(ops), batchSize)
		var del, add [2][]nftables.SetElement // by family: v4, v6
		for _, o := range ops[:n] {
			f := 0
			if !o.p.Addr().Is4() {
				f = 1
			}
			if o.del {
				del[f] = append(del[f], hostElem(o.p.Addr(), 0))
			}
			if o.add {
				var timeout time.Duration
				if !o.end.IsZero() {
					timeout = max(time.Until(o.end), time.Second)
				}
				add[f] = append(add[f], hostElem(o.p.Addr(), timeout))
			}
		}
		// Deletions first: a renewed host is deleted and added in the
		// same transaction, so it is never out of the set.
		for f := range 2 {
			if len(del[f]) > 0 {
				if err := t.conn.SetDeleteElements(t.set[2*f], del[f]); err != nil {
					return t.fail("sync", err)
				}
			}
		}
		for f := range 2 {
			if len(add[f]) > 0 {
				if err := t.conn.SetAddElements(t.set[2*f], add[f]); err != nil {
					return t.fail("sync", err)
				}
			}
		}
		if err := t.conn.Flush(); err != nil {
			return t.fail("sync", err)
		}
		ops = ops[n:]
	}
	return nil
}

// hostOp is what Sync does to one host: delete it, add it, or both
// (renew its timeout).
type hostOp struct {
	p        netip.Prefix
	del, add bool
	end      time.Time
}

// writeNets replaces the network set of one family with the networks of
// that family in nets, in one transaction. A network inside another is
// left out (an interval set holds no overlapping elements); it returns at
// the next Sync if the outer one leaves first.
func (t *Table) writeNets(nets map[netip.Prefix]time.Time, v4 bool) error {
	var ps []netip.Prefix
	for p := range nets {
		if p.Addr().Is4() == v4 {
			ps = append(ps, p)
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Bits() != ps[j].Bits() {
			return ps[i].Bits() < ps[j].Bits()
		}
		return ps[i].Addr().Less(ps[j].Addr())
	})
	var kept []netip.Prefix
	var elems []nftables.SetElement
	for _, p := range ps {
		if slices.ContainsFunc(kept, func(k netip.Prefix) bool { return k.Overlaps(p) }) {
			continue
		}
		kept = append(kept, p)
		var timeout time.Duration
		if end := nets[p]; !end.IsZero() {
			timeout = time.Until(end)
			if timeout <= 0 {
				continue
			}
		}
		elems = append(elems, netElems(p, timeout)...)
	}
	s := t.set[1]
	if !v4 {
		s = t.set[3]
	}
	t.conn.FlushSet(s)
	if len(elems) > 0 {
		if err := t.conn.SetAddElements(s, elems); err != nil {
			return t.fail("networks", err)
		}
	}
	if err := t.conn.Flush(); err != nil {
		return t.fail("networks", err)
	}
	for p := range t.nets {
		if p.Addr().Is4() == v4 {
			delete(t.nets, p)
		}
	}
	for _, p := range kept {
		t.nets[p] = nets[p]
	}
	return nil
}

// kernelHosts reads the host sets: each address with its end.
func (t *Table) kernelHosts() (map[netip.Prefix]time.Time, error) {
	out := map[netip.Prefix]time.Time{}
	now := time.Now()
	for _, s := range []*nftables.Set{t.set[0], t.set[2]} {
		es, err := t.conn.GetSetElements(s)
		if err != nil {
			return nil, t.fail("sync", err)
		}
		for _, e := range es {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				continue
			}
			var end time.Time
			if e.Timeout > 0 {
				end = now.Add(e.Expires)
			}
			out[netip.PrefixFrom(a, a.BitLen())] = end
		}
	}
	return out, nil
}

// endOf turns a timeout into the time the kernel lets the element go.
func endOf(timeout time.Duration) time.Time {
	if timeout <= 0 {
		return time.Time{}
	}
	return time.Now().Add(timeout)
}

// near reports two ends within a minute of each other (or both none): a
// renewal would gain nothing worth a netlink round trip.
func near(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() == b.IsZero()
	}
	d := a.Sub(b)
	return d > -time.Minute && d < time.Minute
}

func maps(m map[netip.Prefix]time.Time) map[netip.Prefix]time.Time {
	out := make(map[netip.Prefix]time.Time, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (t *Table) fail(what string, err error) error {
	return fmt.Errorf("bypass: table %s: %s: %w", t.Name(), what, err)
}
