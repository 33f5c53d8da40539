package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// These tests attack moat's evidence as an outsider would, with nothing but
// an SMTP client, against a real Postfix backend (and a real rspamd): what
// a client writes into the backend's logs must never become evidence
// about anyone else, and a mailbox that is merely full or refused by policy
// must never become a trap.

const (
	fullBox   = "full@example.test"
	policyBox = "policy@example.test"
)

// setRecipientAccess makes the backend answer RCPT for some of its
// mailboxes with a fixed refusal (a Postfix access table, one
// "address code text" per line) and waits for the reload.
func setRecipientAccess(t *testing.T, b *Backend, table string) {
	t.Helper()
	path := filepath.Join(b.Config, "rcpt_access")
	writeFile(t, path, table)
	reloads := b.CountLog(`postfix/master\[\d+\]: reload`)
	b.Set(t, "smtpd_recipient_restrictions = check_recipient_access texthash:"+path)
	deadline := time.Now().Add(10 * time.Second)
	for b.CountLog(`postfix/master\[\d+\]: reload`) == reloads {
		if time.Now().After(deadline) {
			t.Fatalf("backend did not reload within 10s:\n%s", tail(b.Log(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mail is one SMTP transaction.
type mail struct {
	from, rcpt string
	messageID  string // the header's value, as sent
	body       string
}

// transact runs one transaction from ip through moat and returns the reply
// to RCPT and to the end of data (0 when DATA was not reached).
func transact(t *testing.T, ip, addr string, ml mail) (rcpt, final int) {
	t.Helper()
	c := Dial(t, ip, addr)
	defer c.Close()
	expect(t, c, "", 220)
	expect(t, c, "EHLO mail.sender.test", 250)
	expect(t, c, "MAIL FROM:<"+ml.from+">", 250)
	rcpt, _ = c.Cmd(t, "RCPT TO:<"+ml.rcpt+">")
	if rcpt != 250 {
		c.Cmd(t, "QUIT")
		return rcpt, 0
	}
	expect(t, c, "DATA", 354)
	c.Write(t, "From: <"+ml.from+">\r\nTo: <"+ml.rcpt+">\r\nSubject: hello\r\nMessage-ID: "+ml.messageID+"\r\n\r\n"+ml.body+"\r\n.\r\n")
	final, _ = c.Reply(t)
	c.Cmd(t, "QUIT")
	return rcpt, final
}

// passGreylist makes ip a white host: a first attempt is greylisted, the
// retry is handed to the backend and delivered.
func passGreylist(t *testing.T, m *Moat, b *Backend, ip string) {
	t.Helper()
	// A sender of its own: the greylist folds hosts to their /24.
	ml := mail{from: "pass-" + ip + "@sender.test", rcpt: alice, messageID: "<" + ip + ".first@sender.test>", body: "hello"}
	if rcpt, _ := transact(t, ip, m.Addr, ml); rcpt != 451 {
		t.Fatalf("%s: first attempt: RCPT %d, want 451", ip, rcpt)
	}
	time.Sleep(minRetry)
	if _, final := transact(t, ip, m.Addr, ml); final != 250 {
		t.Fatalf("%s: retry: end of data %d, want 250", ip, final)
	}
	waitClass(t, m, ip, "white", 10*time.Second)
}

// TestMessageIDInjection: a host that passed greylisting sends ordinary
// messages whose Message-IDs hold a Postfix reject line, an amavis
// verdict, a spamd result and rspamd's fields, each naming an innocent
// address. The backend logs the Message-IDs as sent; moat follows that log
// for trap evidence and for the verdicts of Postfix, amavis and rspamd, and
// must take none of it: the victims stay unknown with no karma, their /24
// is not escalated, no address becomes a trap candidate. A legitimate
// sender refused for a full mailbox and for an unknown user stays white. The
// attacker's own GTUBE message, refused by the real rspamd milter, is the
// proof that moat read the log to its end.
func TestMessageIDInjection(t *testing.T) {
	rs := StartRspamd(t) // loads while Postfix and moat start
	b := StartBackend(t, true, alice, fullBox)
	setRecipientAccess(t, b, fullBox+" 552 5.2.2 Mailbox full\n")
	m := StartMoat(t, moatConfig(`
[greylist]
greet_delay = "0s"
min_retry = "1s"
retry_window = "1h"

[traps]
domains = ["example.test"]
follow = ["{{maillog}}"]

[reputation]
spf_pools = false
net_threshold = 3
follow = [
  { file = "{{maillog}}", format = "postfix" },
  { file = "{{maillog}}", format = "spamassassin" },
  { file = "{{rspamd_log}}", format = "rspamd" },
]
`), "{{backend}}", b.Addr, "{{maillog}}", b.Maillog, "{{rspamd_log}}", rs.LogFile)
	rs.WaitReady(t, 45*time.Second)
	b.Set(t, "smtpd_milters = inet:"+rs.Addr, "milter_default_action = tempfail", "milter_protocol = 6")

	const attacker, sender = "127.0.0.61", "127.0.0.62"
	passGreylist(t, m, b, attacker)
	passGreylist(t, m, b, sender)

	victims := []string{"198.51.100.11", "198.51.100.12", "198.51.100.13", "198.51.100.14"}
	var ids []string
	for _, v := range victims[:3] {
		ids = append(ids,
			"<pa@x> reject: RCPT from x["+v+"]: 554 5.7.1 spam",
			"<pb@x> (12345-01) Blocked SPAM {DiscardedInbound}, ["+v+"]:25 ["+v+"] <a@b> -> <c@d>, Hits: 99",
			"<pc@x> spamd: result: Y 15 - GTUBE client ["+v+"] scantime=0.1",
			"<pd@x>, qid: <ABC>, ip: "+v+", from: <a@b>, (default: T (reject): [99.00/15.00] [GTUBE]), len: 1",
			"<pe@x> reject: RCPT from x["+v+"]: 550 5.1.1 <"+alice+">: Recipient address rejected: User unknown in virtual mailbox table;",
			"<pf@x> reject: RCPT from x["+v+"]: 550 5.1.1 <ghost@example.test>: Recipient address rejected: User unknown in virtual mailbox table;",
		)
	}
	ids = append(ids,
		"<pg@x> (12345-02) Passed CLEAN {RelayedInbound}, ["+victims[3]+"]:25 <a@b> -> <c@d>, Hits: -5",
		"<ph@x> spamd: result: . -5 - ALL_TRUSTED client ["+victims[3]+"]",
	)
	for i, id := range ids {
		ml := mail{from: "bob@sender.test", rcpt: alice, messageID: id, body: fmt.Sprintf("message %d", i)}
		if _, final := transact(t, attacker, m.Addr, ml); final != 250 {
			t.Fatalf("message %d (%q): end of data %d, want 250", i, id, final)
		}
	}
	b.WaitLog(t, `message-id=<pd@x>, qid: <ABC>, ip: 198\.51\.100\.13`, 10*time.Second)

	// A legitimate sender writes twice to a full mailbox and once to an
	// address that does not exist.
	for _, rcpt := range []string{fullBox, fullBox, "nobody@example.test"} {
		ml := mail{from: "carol@sender.test", rcpt: rcpt, messageID: "<c@sender.test>", body: "hi"}
		if code, _ := transact(t, sender, m.Addr, ml); code/100 != 5 {
			t.Fatalf("%s to %s: %d, want the backend's 5xx", sender, rcpt, code)
		}
	}
	b.WaitLog(t, `552 5\.2\.2 <`+fullBox+`>`, 10*time.Second)

	// The attacker's real spam: rspamd refuses it, Postfix logs that.
	gt := mail{from: "bob@sender.test", rcpt: alice, messageID: "<gtube@sender.test>", body: gtube}
	if _, final := transact(t, attacker, m.Addr, gt); final/100 != 5 {
		t.Fatalf("GTUBE: end of data %d, want the milter's 5xx", final)
	}
	for _, source := range []string{"postfix", "rspamd"} {
		waitRecord(t, m, "a spam verdict from "+source+" about "+attacker, func(rec map[string]any) bool {
			return rec["msg"] == "feedback" && rec["client"] == attacker && rec["source"] == source && rec["verdict"] == "spam"
		})
	}

	for _, v := range victims {
		if h, known := remembered(t, m, v); known {
			t.Errorf("victim %s: %s (%s), karma %s, history %+v; want nothing remembered", v, h.Class, h.Reason, karma(h), h.History)
		}
	}
	for p, class := range m.Hosts(t) {
		if strings.HasPrefix(p, "198.51.100.") {
			t.Errorf("hosts list has %s as %s: nothing about 198.51.100.0/24 came from its hosts", p, class)
		}
	}
	for _, rec := range m.LogRecords() {
		if b, _ := json.Marshal(rec); rec["msg"] == "feedback" && strings.Contains(string(b), "198.51.100.") {
			t.Errorf("moat took a verdict about a victim: %s", b)
		}
	}
	if cands := candidates(t, m); len(cands) != 0 {
		t.Errorf("trap candidates %v, want none: log lines about hosts moat never saw count for nothing", cands)
	}
	if h := showHost(t, m, sender); h.Class != "white" || h.Karma != nil && *h.Karma < 0 {
		t.Errorf("the sender refused for a full mailbox and an unknown user is %s (%s), karma %s; want white, no bad karma",
			h.Class, h.Reason, karma(h))
	}
	// Two followers (maillog and rspamd's log) weigh their verdicts in
	// any order between them, so the attacker's ham may come on either
	// side of one spam verdict; capped, it can never outweigh both.
	if h := showHost(t, m, attacker); h.Karma == nil || *h.Karma > 0 {
		t.Errorf("attacker after its GTUBE: karma %s, want at most 0: ham is capped at one spam verdict's worth", karma(h))
	}
}

// TestPromotionProbeInconclusive: three bots name a full mailbox, a
// mailbox the backend refuses by policy and an address that does not
// exist, in the tarpit. In "promote" mode moat probes each against the real
// Postfix: the unknown one becomes a trap; 552 5.2.2 and 550 5.7.1 leave
// the others candidates, with the backend's reply recorded. The backend's
// policy refusal of moat's own probe gives 127.0.0.1 no karma.
func TestPromotionProbeInconclusive(t *testing.T) {
	const ghost = "ghost@example.test"
	b := StartBackend(t, true, alice, fullBox, policyBox)
	setRecipientAccess(t, b, fullBox+" 552 5.2.2 Mailbox full\n"+policyBox+" 550 5.7.1 Refused by policy\n")
	bots := []string{"127.0.0.71", "127.0.0.72", "127.0.0.73"}
	m := StartMoat(t, moatConfig(`blacklist = ["127.0.0.71/32", "127.0.0.72/32", "127.0.0.73/32"]

[tarpit]
stutter = "2ms"

[traps]
domains = ["example.test"]
auto = "promote"

[reputation]
spf_pools = false
follow = [{ file = "{{maillog}}", format = "postfix" }]
`), "{{backend}}", b.Addr, "{{maillog}}", b.Maillog)

	for _, bot := range bots {
		c := Dial(t, bot, m.Addr)
		expect(t, c, "", 220)
		expect(t, c, "EHLO bot.test", 250)
		expect(t, c, "MAIL FROM:<bot@spam.test>", 250)
		for _, rcpt := range []string{fullBox, policyBox, ghost} {
			expect(t, c, "RCPT TO:<"+rcpt+">", 250) // an open relay, it seems
		}
		c.Close()
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		cands := probedCandidates(t, m)
		if trapList(t, m)[ghost] && cands[fullBox] != "" && cands[policyBox] != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s: traps %v, candidates %v; want %s a trap and both others probed", trapList(t, m), cands, ghost)
		}
		time.Sleep(200 * time.Millisecond)
	}
	traps := trapList(t, m)
	if traps[fullBox] || traps[policyBox] {
		t.Errorf("traps %v: a full mailbox or a policy refusal was promoted", traps)
	}
	cands := probedCandidates(t, m)
	for addr, reply := range map[string]string{fullBox: "552 5.2.2", policyBox: "550 5.7.1"} {
		if !strings.HasPrefix(cands[addr], reply) {
			t.Errorf("%s: last probe %q, want the backend's %s", addr, cands[addr], reply)
		}
	}
	b.WaitLog(t, `NOQUEUE: reject: RCPT from [^ ]*\[127\.0\.0\.1\]: 550 5\.7\.1 <`+policyBox+`>`, 10*time.Second)

	// A client the backend refuses by policy, straight to the backend
	// (as behind a load balancer): its line comes after the probes', so
	// once moat has its verdict it has read the probes' lines too.
	c := Dial(t, "127.0.0.1", b.Addr)
	c.Write(t, string(ProxyV2Header(netip.MustParseAddrPort("127.0.0.88:40000"), netip.MustParseAddrPort(b.Addr))))
	expect(t, c, "", 220)
	expect(t, c, "EHLO client.test", 250)
	expect(t, c, "MAIL FROM:<x@client.test>", 250)
	expect(t, c, "RCPT TO:<"+policyBox+">", 550)
	c.Close()
	waitRecord(t, m, "a spam verdict about 127.0.0.88", func(rec map[string]any) bool {
		return rec["msg"] == "feedback" && rec["client"] == "127.0.0.88"
	})
	if h, known := remembered(t, m, "127.0.0.1"); known {
		t.Errorf("127.0.0.1 (moat's own probe) is %s (%s) with karma %s, want nothing remembered", h.Class, h.Reason, karma(h))
	}
}

// remembered returns "moat hosts show IP", and whether moat remembers
// anything of ip at all.
func remembered(t *testing.T, m *Moat, ip string) (hostShow, bool) {
	t.Helper()
	out, stderr, err := moatCmd(t, m, "hosts", "show", ip, "--json")
	if err != nil {
		if strings.Contains(stderr, "remembers nothing") {
			return hostShow{}, false
		}
		t.Fatalf("moat hosts show %s: %v\n%s", ip, err, stderr)
	}
	var h hostShow
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatalf("moat hosts show: %v in %q", err, out)
	}
	return h, true
}

func karma(h hostShow) string {
	if h.Karma == nil {
		return "none"
	}
	return fmt.Sprintf("%.2f", *h.Karma)
}

// probedCandidates returns "moat traps candidates --json" as the last
// probe's reply per candidate address ("" when not probed yet).
func probedCandidates(t *testing.T, m *Moat) map[string]string {
	t.Helper()
	out := m.CLI(t, "traps", "candidates", "--json")
	var list []struct {
		Addr       string `json:"addr"`
		ProbeReply string `json:"probe_reply"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("traps candidates --json: %v\n%s", err, out)
	}
	cands := make(map[string]string)
	for _, c := range list {
		cands[c.Addr] = c.ProbeReply
	}
	return cands
}

// TestBaitOnlyAtItsDomain: a harvester fetches the bait page, and a grey
// host uses a minted local part at another domain, in MAIL FROM and in
// RCPT TO, as one would through a provider's server: neither the sender
// nor the harvester is blacklisted. The same address at the bait domain
// blacklists both.
func TestBaitOnlyAtItsDomain(t *testing.T) {
	b := StartBackend(t, true, alice)
	page := FreeAddr(t, "127.0.0.1")
	m := StartMoat(t, moatConfig(`
[greylist]
greet_delay = "0s"

[bait]
listen = "{{bait}}"
domain = "example.test"
`), "{{backend}}", b.Addr, "{{bait}}", page)
	if !waitListening(page, 10*time.Second, nil) {
		t.Fatalf("bait page does not listen on %s", page)
	}

	const harvester = "127.0.0.90"
	web := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(harvester)}}).DialContext}}
	resp, err := web.Get("http://" + page + "/")
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	minted := regexp.MustCompile(`mailto:(b-[a-z2-7]+)@example\.test`).FindStringSubmatch(string(html))
	if minted == nil {
		t.Fatalf("no bait address in the page:\n%s", html)
	}
	foreign, bait := minted[1]+"@foreign.test", minted[1]+"@example.test"

	const sender = "127.0.0.91"
	c := Dial(t, sender, m.Addr)
	expect(t, c, "", 220)
	expect(t, c, "EHLO relay.provider.test", 250)
	expect(t, c, "MAIL FROM:<"+foreign+">", 250)
	expect(t, c, "RCPT TO:<"+alice+">", 451)
	expect(t, c, "RSET", 250)
	expect(t, c, "MAIL FROM:<user@provider.test>", 250)
	expect(t, c, "RCPT TO:<"+foreign+">", 451)
	c.Close()
	hosts := m.Hosts(t)
	for _, h := range []string{sender, harvester} {
		if hosts[h] == "black" {
			t.Errorf("%s is black after %s was used: bait is bait only at its domain", h, foreign)
		}
	}

	// At the bait domain it is a trap, and it names its harvester.
	const bot = "127.0.0.92"
	c = Dial(t, bot, m.Addr)
	expect(t, c, "", 220)
	expect(t, c, "EHLO bot.test", 250)
	expect(t, c, "MAIL FROM:<bot@spam.test>", 250)
	c.Cmd(t, "RCPT TO:<"+bait+">")
	c.Close()
	waitBlack(t, m, bot)
	waitBlack(t, m, harvester)
	if hosts := m.Hosts(t); hosts[sender] == "black" {
		t.Errorf("%s is black, want it untouched", sender)
	}
}
