package classify

import (
	"net/netip"
	"strings"
	"time"

	"moat/internal/store"
)

// acceptedKind records accepted mail: per host (its address or network)
// and per sender domain whose SPF pool the client belonged to ("@domain").
// The record is the time of the last accepted message; it lives as long as
// a white entry would.
const acceptedKind = "accepted"

// vouch remembers that key had a message accepted at now. A failure to
// remember costs only the vouching, never the message.
func (e *Engine) vouch(key string, now time.Time) {
	_ = e.st.Put(acceptedKind, key, []byte(now.UTC().Format(time.RFC3339)), now.Add(e.cfg().WhiteTTL))
}

// vouched says why a trap hit from client must not blacklist it, if it
// must not: the configuration or the operator lists it white, or it is
// white now (accepted mail, a DNS allow list), or it has had mail
// accepted, or SPF authorises it for the sender's domain and that
// domain's pool has had mail accepted — a provider's server relaying one
// of its users.
func (e *Engine) vouched(client netip.Addr, sender string) (string, bool) {
	v, err := e.Classify(client)
	if err == nil && v.Class == store.White {
		return "white: " + v.Reason, true
	}
	p := store.HostPrefix(client)
	if _, ok, _ := e.st.Get(acceptedKind, hostKey(p)); ok {
		return "mail from this host was accepted before", true
	}
	if d := e.poolDomain(client, sender); d != "" {
		if _, ok, _ := e.st.Get(acceptedKind, "@"+d); ok {
			return "SPF authorises it for " + d + ", whose mail was accepted before", true
		}
	}
	return "", false
}

// poolDomain returns the sender's domain when SPF-aware pools are on and
// the domain's SPF record authorises client; "" otherwise.
func (e *Engine) poolDomain(client netip.Addr, sender string) string {
	r := e.rep()
	if r == nil || r.Pools == nil || sender == "" {
		return ""
	}
	at := strings.LastIndexByte(sender, '@')
	if at < 0 || !r.Pools.Authorised(client, sender) {
		return ""
	}
	return strings.ToLower(sender[at+1:])
}
