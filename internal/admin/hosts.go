package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"moat/internal/classify"
	"moat/internal/ledger"
	"moat/internal/prefix"
	"moat/internal/store"
)

// HostView is one host as the operator sees it.
type HostView struct {
	IP        string     `json:"ip"`
	Class     string     `json:"class"`
	Reason    string     `json:"reason"`
	FirstSeen time.Time  `json:"first_seen"`
	LastSeen  time.Time  `json:"last_seen"`
	Expires   *time.Time `json:"expires,omitempty"`
	Held      int64      `json:"tarpit_seconds,omitempty"` // seconds this host spent in the tarpit
	// Its messages the tarpit told 250 and dropped, deferred (4xx) and
	// refused (5xx), as far as the ledger remembers.
	Dropped  int64 `json:"dropped,omitempty"`
	Deferred int64 `json:"deferred,omitempty"`
	Refused  int64 `json:"refused,omitempty"`
}

// HostHistory is what "moat hosts show IP" prints.
type HostHistory struct {
	IP      string           `json:"ip"`
	Class   string           `json:"class"`
	Reason  string           `json:"reason"`
	Entry   *HostView        `json:"entry,omitempty"` // the store's entry that decides (the host's own or its network's)
	Karma   *float64         `json:"karma,omitempty"`
	History []classify.Event `json:"history"`
	// Told is what its sessions in the tarpit were told, with their
	// envelopes (the ledger's record); nil when there is none.
	Told *ledger.Record `json:"told,omitempty"`
}

// ParseTarget accepts an address or a CIDR.
func ParseTarget(s string) (netip.Prefix, error) {
	p, err := prefix.Parse(s)
	if err != nil {
		return netip.Prefix{}, badRequest{fmt.Errorf("%q is not an IP address or CIDR", s)}
	}
	return p, nil
}

// unknownHost is the answer about a host or network moat remembers
// nothing of.
func unknownHost(target string) error {
	return notFound{fmt.Errorf("%s: moat remembers nothing of it", target)}
}

// Hosts lists hosts, optionally of one class, sorted by address.
func (s *Service) Hosts(class string) ([]HostView, error) {
	var want *store.Class
	if class != "" {
		c, err := store.ParseClass(class)
		if err != nil {
			return nil, badRequest{err}
		}
		want = &c
	}
	type row struct {
		p netip.Prefix
		v HostView
	}
	var rows []row
	err := s.Eng.Store().Hosts(func(h store.Host) bool {
		if want == nil || h.Class == *want {
			rows = append(rows, row{h.Prefix, view(h)})
		}
		return true
	})
	if s.Ledger != nil && err == nil {
		// What each host's listing cost, from one pass over the
		// ledger's records and one over its held times.
		told := map[netip.Addr]ledger.Record{}
		held := map[netip.Addr]int64{}
		err = s.Ledger.Records(func(a netip.Addr, r ledger.Record) bool { told[a] = r; return true })
		if err == nil {
			err = s.Ledger.EachHeld(func(a netip.Addr, secs int64) bool { held[a] = secs; return true })
		}
		for i := range rows {
			if !rows[i].p.IsSingleIP() {
				continue
			}
			a, v := rows[i].p.Addr(), &rows[i].v
			v.Held = held[a]
			if r, ok := told[a]; ok {
				v.Dropped, v.Deferred, v.Refused = r.Dropped, r.Deferred, r.Refused
				delete(told, a)
			}
		}
		// The hosts the ledger has a record of but the store has no
		// entry for (black by the configuration's blacklist, a network
		// entry or a network list), so that what their listing cost is
		// counted too.
		for a, r := range told {
			c, cerr := s.Eng.Classify(a)
			if cerr != nil || want != nil && c.Class != *want {
				continue
			}
			v := HostView{IP: a.String(), Class: c.Class.String(), Reason: c.Reason, Held: held[a],
				Dropped: r.Dropped, Deferred: r.Deferred, Refused: r.Refused}
			if n := len(r.Sessions); n > 0 {
				v.FirstSeen, v.LastSeen = r.Sessions[0].Start, r.Sessions[n-1].End
			}
			rows = append(rows, row{store.HostPrefix(a), v})
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i].p, rows[j].p
		if a.Addr() != b.Addr() {
			return a.Addr().Less(b.Addr())
		}
		return a.Bits() < b.Bits()
	})
	var out []HostView
	for _, r := range rows {
		out = append(out, r.v)
	}
	return out, err
}

// told is the ledger's record of addr, if there is a ledger and one.
func (s *Service) told(addr netip.Addr) (ledger.Record, bool) {
	if s.Ledger == nil {
		return ledger.Record{}, false
	}
	r, ok, err := s.Ledger.Of(addr)
	return r, ok && err == nil
}

func view(h store.Host) HostView {
	ip := h.Prefix.String()
	if h.Prefix.IsSingleIP() {
		ip = h.Prefix.Addr().String()
	}
	v := HostView{IP: ip, Class: h.Class.String(), Reason: h.Reason, FirstSeen: h.First, LastSeen: h.Last}
	if !h.Expires.IsZero() {
		e := h.Expires
		v.Expires = &e
	}
	return v
}

// Widest networks the operator may list without saying he means it: a
// typo like 0.0.0.0/0 or 2001:db8::/3 would otherwise blacklist (or
// whitelist) a good part of the Internet.
const (
	widestV4 = 16
	widestV6 = 32
)

// SetClass makes target white or black, or forgets it for grey, and
// returns the network it stored (host bits cleared: 192.0.2.7/24 is
// 192.0.2.0/24). A network wider than a /16 (IPv4) or a /32 (IPv6) is
// refused unless force is set.
func (s *Service) SetClass(target, class string, force bool) (netip.Prefix, error) {
	p, err := ParseTarget(target)
	if err != nil {
		return p, err
	}
	c, err := store.ParseClass(class)
	if err != nil {
		return p, badRequest{err}
	}
	if err := checkWidth(p, c, force); err != nil {
		return p, err
	}
	return p, s.Eng.SetClass(p, c, "operator")
}

// checkWidth refuses a network too wide to be meant, unless forced.
func checkWidth(p netip.Prefix, c store.Class, force bool) error {
	widest := widestV4
	if p.Addr().Is6() {
		widest = widestV6
	}
	if force || c == store.Grey || p.Bits() >= widest {
		return nil
	}
	return badRequest{fmt.Errorf("%s covers more than a /%d: making it %s needs --force (\"force\": true in the API) if you mean it", p, widest, c)}
}

// Forget removes what moat remembers of target.
func (s *Service) Forget(target string) error {
	p, err := ParseTarget(target)
	if err != nil {
		return err
	}
	if err := s.Eng.Forget(p); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return unknownHost(target)
		}
		return err
	}
	return nil
}

// HostHistory returns a host's class, karma and evidence history. A host
// or network moat remembers nothing of (no entry, no karma, no history,
// in no list) is notFound.
func (s *Service) HostHistory(target string) (HostHistory, error) {
	p, err := ParseTarget(target)
	if err != nil {
		return HostHistory{}, err
	}
	out := HostHistory{IP: target, History: []classify.Event{}}
	known := false // the classification rests on something: a list, an entry
	if p.IsSingleIP() {
		addr := p.Addr()
		out.IP = addr.String()
		v, err := s.Eng.Classify(addr)
		if err != nil {
			return out, err
		}
		out.Class, out.Reason, known = v.Class.String(), v.Reason, v.Source != store.SourceUnknown
		if h, ok, err := s.Eng.Store().Lookup(addr); err == nil && ok {
			hv := view(h)
			out.Entry = &hv
		}
		if k, ok, err := s.Eng.KarmaOf(addr); err == nil && ok {
			out.Karma = &k
		}
		if r, ok := s.told(addr); ok {
			out.Told = &r
		}
	} else {
		out.IP = p.String()
		out.Class, out.Reason = store.Grey.String(), "unknown"
		if h, ok, err := s.Eng.Store().Host(p); err == nil && ok {
			hv := view(h)
			out.Entry = &hv
			out.Class, out.Reason = h.Class.String(), h.Reason
		}
	}
	evs, err := s.Eng.History(p)
	if err != nil {
		return out, err
	}
	if evs != nil {
		out.History = evs
	}
	if !known && out.Entry == nil && out.Karma == nil && len(out.History) == 0 && out.Told == nil {
		return out, unknownHost(out.IP)
	}
	return out, nil
}

func (s *Service) hostRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/hosts", func(w http.ResponseWriter, r *http.Request) {
		hs, err := s.Hosts(r.URL.Query().Get("class"))
		reply(w, hs, err)
	})
	serveJSON(mux, "POST /v1/hosts", 64<<10, func(_ *http.Request, req struct {
		IP, Class string
		Force     bool
	}) (any, error) {
		p, err := s.SetClass(req.IP, req.Class, req.Force)
		return map[string]string{"ip": req.IP, "class": req.Class, "stored": p.String()}, err
	})
	// A host's history, at /v1/hosts/IP/history (or /v1/hosts/IP); the
	// slash of a CIDR may be written as is or escaped.
	mux.HandleFunc("GET /v1/hosts/{ip...}", func(w http.ResponseWriter, r *http.Request) {
		h, err := s.HostHistory(strings.TrimSuffix(r.PathValue("ip"), "/history"))
		reply(w, h, err)
	})
	mux.HandleFunc("DELETE /v1/hosts/{ip...}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"forgotten": r.PathValue("ip")}, s.Forget(r.PathValue("ip")))
	})
}
