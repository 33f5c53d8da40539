package classify

import (
	"strings"

	"moat/internal/store"
)

// The precedence of evidence, written once. Every write of a class goes
// through setHost, which asks replaces; nothing else in moat decides which
// evidence wins.
//
//	operator   moat hosts white|black, the admin API, the config's lists:
//	           changed only by the operator
//	proof      trap, bait, early talk, smuggling, relay attempt: the host is a bot
//	evidence   DNS block lists, the filters' verdicts (karma), network
//	           escalation and network lists, imported black entries
//	good       a message the backend accepted after a greylist pass, a DNS
//	           allow list, imported white entries
//	greylisted waiting out the greylist
//
// Stronger evidence replaces weaker; equal evidence replaces equal (the
// newer word counts), except that at equal rank black stands: a DNS allow
// list never undoes a block list, a filter's "grey" never undoes its own
// "black". A greylist pass therefore never undoes black, and never touches
// an operator's or the config's entry.
type rank uint8

const (
	rankGreylisted rank = iota + 1
	rankGood
	rankEvidence
	rankProof
	rankOperator
)

// rankOf is how strong the evidence behind h is.
func rankOf(h store.Host) rank {
	switch SourceOf(h) {
	case store.SourceOperator:
		return rankOperator
	case store.SourceTrap, store.SourceBait, store.SourceEarlyTalk, store.SourceSmuggling, store.SourceRelay:
		return rankProof
	case store.SourceDNSBL, store.SourceFeedback, store.SourceEscalation, store.SourceNetList:
		return rankEvidence
	case store.SourceAccepted, store.SourceDNSWL:
		return rankGood
	case store.SourceImport:
		if h.Class == store.Black {
			return rankEvidence
		}
		return rankGood
	}
	return rankGreylisted
}

// replaces reports whether new evidence n may replace the stored entry old.
func replaces(n, old store.Host) bool {
	rn, ro := rankOf(n), rankOf(old)
	if rn != ro {
		return rn > ro
	}
	return old.Class != store.Black || n.Class == store.Black
}

// Proves reports whether a black host's source proves it is a bot: its
// messages may be told 250 and dropped. Every weaker reason leaves room
// for a mistake, and a mistake must cost a delay, never a message.
func Proves(s store.Source) bool {
	switch s {
	case store.SourceTrap, store.SourceBait, store.SourceEarlyTalk, store.SourceSmuggling, store.SourceRelay:
		return true
	}
	return false
}

// RelayAttempt reports whether a host black by src that names a recipient
// at domain (as the client wrote it) to what it takes for an open relay
// proves itself a bot: no mail server sends mail for another domain to our
// MX. ours says which domains are ours; nil means moat does not know, and
// nothing is a relay attempt. A host already proven needs no more proof; a
// recipient with no domain or at a domain literal is never counted, since
// moat cannot tell whether it is ours.
func RelayAttempt(src store.Source, domain string, ours func(string) bool) bool {
	return ours != nil && !Proves(src) && domain != "" && domain[0] != '[' && !ours(domain)
}

// SourceOf returns h's source. Entries written before sources were kept
// have none: theirs is read from the reason moat wrote then (moat's own
// words, at the start of the reason, never a sender's) and from their
// expiry (only the operator's entries never expire).
func SourceOf(h store.Host) store.Source {
	if h.Source != store.SourceUnknown {
		return h.Source
	}
	if h.Expires.IsZero() && h.Class != store.Grey {
		return store.SourceOperator
	}
	for _, l := range legacyReasons {
		if strings.HasPrefix(h.Reason, l.prefix) {
			return l.source
		}
	}
	switch h.Class {
	case store.White:
		return store.SourceAccepted
	case store.Black:
		return store.SourceDNSBL
	}
	return store.SourceGreylist
}

var legacyReasons = []struct {
	prefix string
	source store.Source
}{
	{"trap hit", store.SourceTrap},
	{"harvested bait", store.SourceBait},
	{"early talker", store.SourceEarlyTalk},
	{"dnsbl:", store.SourceDNSBL},
	{"dnswl:", store.SourceDNSWL},
	{"feedback:", store.SourceFeedback},
	{"network escalation", store.SourceEscalation},
	{"greylisted", store.SourceGreylist},
	{"greylist", store.SourceAccepted},
}
