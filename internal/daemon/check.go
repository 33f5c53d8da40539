package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"time"

	"moat/internal/admin"
	"moat/internal/config"
	"moat/internal/traps"
)

// Finding is one line of "moat check": what was looked at, what it
// holds, and whether moat can run with it.
type Finding struct {
	What   string // the key or part, e.g. "tls", "reputation.drop_lists"
	Detail string
	Level  Level
}

// Level says whether a Finding stops moat (Fail), deserves a look (Warn)
// or is fine.
type Level int

const (
	OK Level = iota
	Warn
	Fail
)

func (l Level) String() string { return [...]string{"ok", "WARN", "FAIL"}[l] }

// certWarn is how long before a certificate expires "moat check" says so.
const certWarn = 14 * 24 * time.Hour

// CheckFiles loads every file the configuration names as New and Reload
// do (the TLS key pair, the network lists and the AS table, the admin
// token) and looks at those read later (followed logs, the bait key), and
// says what each holds. It writes nothing: a bait key that does not exist
// yet is only reported, not made.
func CheckFiles(cfg *config.Config) []Finding {
	var out []Finding
	add := func(what string, l Level, format string, args ...any) {
		out = append(out, Finding{What: what, Level: l, Detail: fmt.Sprintf(format, args...)})
	}
	switch tlsCfg, err := loadTLS(cfg); {
	case err != nil:
		add("tls", Fail, "%v", err)
	case tlsCfg == nil:
		add("tls", OK, "no certificate: STARTTLS is not offered")
	default:
		leaf := tlsCfg.Certificates[0].Leaf
		left := time.Until(leaf.NotAfter)
		l := OK
		switch {
		case left <= 0:
			l = Fail
		case left < certWarn:
			l = Warn
		}
		add("tls", l, "%s: %s, DNS names %s, expires %s (%s)", cfg.TLS.Cert, leaf.Subject.CommonName,
			strings.Join(leaf.DNSNames, " "), leaf.NotAfter.UTC().Format(time.DateOnly), until(left))
	}
	rep, err := buildReputation(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		add("reputation", Fail, "%v", err)
	} else {
		if n := len(cfg.Reputation.DropLists); n > 0 {
			add("reputation.drop_lists", OK, "%d files, %d networks", n, rep.Drop.Len())
		}
		if cfg.Reputation.ASNDB != "" {
			add("reputation.asn_db", OK, "%s: %d ranges", cfg.Reputation.ASNDB, rep.ASN.Len())
		}
		if n := len(cfg.Reputation.DNSBL); n > 0 {
			add("reputation.dnsbl", OK, "%d DNS lists", n)
		}
	}
	add("traps.addresses", OK, "%d configured", len(cfg.Traps.Addresses))
	if len(cfg.Domains) == 0 {
		add("domains", OK, "none: no recipient is taken for a relay attempt")
	} else {
		add("domains", OK, "%s: a listed host asking to relay to any other domain is proven a bot", strings.Join(cfg.Domains, " "))
	}
	if cfg.Admin.Listen != "" {
		if _, err := admin.LoadToken(cfg.Admin.TokenFile); err != nil {
			add("admin.token_file", Fail, "%v", err)
		}
	}
	if cfg.Bait.Domain != "" {
		if _, err := os.Stat(cfg.BaitKeyFile()); os.IsNotExist(err) {
			add("bait.secret_file", OK, "%s: none yet, moat run makes it", cfg.BaitKeyFile())
		} else if _, err := traps.LoadKey(cfg.BaitKeyFile()); err != nil {
			add("bait.secret_file", Fail, "%v", err)
		}
	}
	for _, f := range cfg.Traps.Follow {
		out = append(out, readable("traps.follow", f))
	}
	for _, f := range cfg.Reputation.Follow {
		out = append(out, readable("reputation.follow", f.File))
	}
	if cfg.User != "" {
		if _, err := user.Lookup(cfg.User); err != nil {
			add("user", Fail, "%v (create it, e.g. adduser --system --group %s)", err, cfg.User)
		} else {
			add("user", OK, "%s: moat becomes it once its sockets and files are open", cfg.User)
		}
	}
	return out
}

// readable says whether a log to follow can be read now. One that does not
// exist yet is no failure: the follower waits for it.
func readable(key, path string) Finding {
	f, err := os.Open(path)
	switch {
	case os.IsNotExist(err):
		return Finding{What: key, Level: Warn, Detail: path + ": does not exist (yet): moat follows it once it does"}
	case err != nil:
		return Finding{What: key, Level: Fail, Detail: err.Error()}
	}
	f.Close()
	return Finding{What: key, Detail: path + ": readable"}
}

// until says how long is left, in days or hours.
func until(d time.Duration) string {
	switch {
	case d <= 0:
		return "EXPIRED"
	case d < 48*time.Hour:
		return fmt.Sprintf("in %d hours", int(d.Hours()))
	}
	return fmt.Sprintf("in %d days", int(d.Hours()/24))
}
