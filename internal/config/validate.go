package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"
)

// validate checks what the types cannot: ranges, keys that go together,
// and settings under which nothing would work. It returns every problem it
// finds (errors.Join), each naming its key and what to write instead, so
// that an operator fixes a file in one round ("moat check" lists them all).
func (c *Config) validate() error {
	var p problems
	switch c.Mode {
	case "enforce", "observe":
	default:
		p.add("config: mode: %q: want \"enforce\" (default) or \"observe\" (see every session pass, learn, defer and drop nothing)", c.Mode)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		p.add("config: listen: %q: want host:port, e.g. \":25\" or \"192.0.2.1:25\"", c.Listen)
	}
	if _, _, err := net.SplitHostPort(c.Backend); err != nil {
		p.add("config: backend: %q: want host:port of the real mail server, e.g. \"127.0.0.1:10025\"", c.Backend)
	}
	switch c.BackendProxyProtocol {
	case "v1", "v2", "none":
	default:
		p.add("config: backend_proxy_protocol: %q: want \"v2\", \"v1\" or \"none\"", c.BackendProxyProtocol)
	}
	if c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t\r\n") {
		p.add("config: hostname: %q: want the host name for the banner, e.g. \"mx.example.org\"", c.Hostname)
	}
	if c.DataDir == "" {
		p.add("config: data_dir: must not be empty (default \"./moat-data\")")
	}
	switch {
	case c.Store == "", c.Store == "bolt", strings.HasPrefix(c.Store, "redis://"),
		strings.HasPrefix(c.Store, "rediss://"), strings.HasPrefix(c.Store, "redis-sentinel://"),
		strings.HasPrefix(c.Store, "rediss-sentinel://"), strings.HasPrefix(c.Store, "redis-cluster://"),
		strings.HasPrefix(c.Store, "rediss-cluster://"):
	default:
		p.add("config: store: %q: want \"bolt\" (default) or a redis://, rediss://, redis-sentinel:// or redis-cluster:// URL (see docs/redis.md)", c.Store)
	}
	if err := c.Bypass.validate(c.Listen); err != nil {
		p = append(p, err)
	}
	c.Redis.validate(&p)
	c.Reputation.validate(&p)
	g := c.Greylist
	if g.MinRetry.Duration <= 0 {
		p.add("config: greylist.min_retry: %q: must be > 0 (default \"1m\"): with no wait, every sender that retries at all passes at once", g.MinRetry)
	}
	if g.MinRetry.Duration >= g.RetryWindow.Duration {
		p.add("config: greylist.min_retry (%s) must be shorter than greylist.retry_window (%s)", g.MinRetry, g.RetryWindow)
	}
	if g.WhiteTTL.Duration <= 0 {
		p.add("config: greylist.white_ttl must be positive (default \"864h\")")
	}
	if g.GreetDelay.Duration > 5*time.Minute {
		p.add("config: greylist.greet_delay: %s is longer than the 5 minutes senders wait for a banner (RFC 5321 4.5.3.2); use at most \"30s\"", g.GreetDelay)
	}
	if g.IPv4Prefix < 8 || g.IPv4Prefix > 32 {
		p.add("config: greylist.ipv4_prefix: %d: want 8..32 (default 24)", g.IPv4Prefix)
	}
	if g.IPv6Prefix < 16 || g.IPv6Prefix > 128 {
		p.add("config: greylist.ipv6_prefix: %d: want 16..128 (default 64)", g.IPv6Prefix)
	}
	if c.BlackTTL.Duration <= 0 {
		p.add("config: black_ttl must be positive (default \"24h\")")
	}
	t := c.Tarpit
	if t.Stutter.Duration <= 0 || t.Stutter.Duration > time.Minute {
		p.add("config: tarpit.stutter: %s: want between \"1ms\" and \"1m\" (default \"1s\")", t.Stutter)
	}
	if t.MaxConns < 1 {
		p.add("config: tarpit.max_conns: %d: must be at least 1 (default 15000)", t.MaxConns)
	}
	if t.MaxBytes < 1024 {
		p.add("config: tarpit.max_bytes: %d: must be at least 1024 (default 10485760)", t.MaxBytes)
	}
	if t.DataPace < 1 || t.DataPace > 4096 {
		p.add("config: tarpit.data_pace: %d: want 1..4096 bytes per stutter (default 16)", t.DataPace)
	}
	finals := t.FinalReply.ByReason()
	for _, reason := range slices.Sorted(maps.Keys(finals)) {
		switch v := finals[reason]; v {
		case "accept", "defer", "reject":
		default:
			p.add("config: tarpit.final_reply.%s: %q: want \"accept\" (250, the message is dropped), \"defer\" (451: the sender keeps it) or \"reject\" (554: the sender bounces it)",
				strings.ReplaceAll(reason, "-", "_"), v)
		}
	}
	l := c.Limits
	for _, kv := range []struct {
		key string
		v   int64
	}{
		{"limits.max_conns", int64(l.MaxConns)},
		{"limits.max_conns_per_ip", int64(l.MaxConnsPerIP)},
		{"limits.max_rcpts", int64(l.MaxRcpts)},
		{"limits.max_message_size", int64(l.MaxMessageSize)},
		{"limits.max_commands", int64(l.MaxCommands)},
		{"limits.max_errors", int64(l.MaxErrors)},
	} {
		if kv.v < 1 {
			p.add("config: %s: %d: must be at least 1", kv.key, kv.v)
		}
	}
	if l.MinDataRate < 0 {
		p.add("config: limits.min_data_rate: %d: want bytes per second, 0 for no floor (default 500)", l.MinDataRate)
	}
	if t.MaxConns >= l.MaxConns {
		p.add("config: tarpit.max_conns (%d) must be below limits.max_conns (%d), so white and grey hosts keep a reserve when the tarpit is full", t.MaxConns, l.MaxConns)
	}
	for _, kv := range []struct {
		key string
		v   time.Duration
	}{
		{"limits.idle_timeout", l.IdleTimeout.Duration},
		{"limits.data_timeout", l.DataTimeout.Duration},
		{"limits.data_done_timeout", l.DataDoneTimeout.Duration},
		{"limits.backend_timeout", l.BackendTimeout.Duration},
		{"tarpit.max_duration", t.MaxDuration.Duration},
		{"tarpit.idle_timeout", t.IdleTimeout.Duration},
	} {
		if kv.v <= 0 {
			p.add("config: %s: must be positive", kv.key)
		}
	}
	c.Admin.validate(&p)
	c.Metrics.validate(&p)
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		p.add("config: tls.cert and tls.key must be set together (or neither, to not offer STARTTLS)")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("config: log.level: %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		p.add("config: log.format: %q: want json or text", c.Log.Format)
	}
	switch c.Log.Output {
	case "stderr", "syslog":
	default:
		p.add("config: log.output: %q: want \"stderr\" (default; under systemd each line carries its priority) or \"syslog\" (the local syslog, mail facility)", c.Log.Output)
	}
	if c.User != "" && (strings.ContainsAny(c.User, " \t\r\n:/") || c.User == "root") {
		p.add("config: user: %q: want the name of an unprivileged system user, e.g. \"moat\", or \"\" to keep the user moat starts as", c.User)
	}
	for i, a := range c.Traps.Addresses {
		if !strings.Contains(a, "@") {
			p.add("config: traps.addresses[%d]: %q: want a full address, e.g. \"trap@example.org\"", i, a)
		}
	}
	for i, d := range c.Domains {
		if !isDomain(d) {
			p.add("config: domains[%d]: %q: want a domain this MX takes mail for, e.g. \"example.org\"", i, d)
		}
	}
	c.validateMining(&p)
	return p.err()
}

// validateMining checks the trap mining and bait keys.
func (c *Config) validateMining(p *problems) {
	t := c.Traps
	for i, d := range t.Domains {
		if !isDomain(d) {
			p.add("config: traps.domains[%d]: %q: want a domain, e.g. \"example.org\"", i, d)
		}
	}
	if t.MinHosts < 1 || t.MinHosts > 16 {
		p.add("config: traps.min_hosts: %d: want 1..16 (default 3)", t.MinHosts)
	}
	switch t.Auto {
	case "suggest", "promote", "off":
	default:
		p.add("config: traps.auto: %q: want \"suggest\" (default), \"promote\" or \"off\"", t.Auto)
	}
	for i, f := range t.Follow {
		if f == "" {
			p.add("config: traps.follow[%d]: empty path: want a log file, e.g. \"/var/log/mail.log\"", i)
		}
	}
	if t.RejectPattern != "" {
		re, err := regexp.Compile(t.RejectPattern)
		if err != nil {
			p.add("config: traps.reject_pattern: not a regular expression: %v", err)
		} else if re.SubexpIndex("client") < 0 || re.SubexpIndex("addr") < 0 {
			p.add("config: traps.reject_pattern: needs the named groups (?P<client>…) for the client's IP address and (?P<addr>…) for the recipient")
		}
	}
	b := c.Bait
	if b.Listen != "" {
		if _, _, err := net.SplitHostPort(b.Listen); err != nil {
			p.add("config: bait.listen: %q: want host:port, e.g. \"127.0.0.1:8025\"", b.Listen)
		}
		if b.Domain == "" {
			p.add("config: bait.domain: must be set when bait.listen is: the domain of the bait addresses, e.g. \"example.org\"")
		}
	}
	if b.Domain != "" && !isDomain(b.Domain) {
		p.add("config: bait.domain: %q: want a domain, e.g. \"example.org\"", b.Domain)
	}
	if b.Count < 1 || b.Count > 20 {
		p.add("config: bait.count: %d: want 1..20 (default 3)", b.Count)
	}
}

// validate checks the TCP admin listener: it is never open without a token.
func (a Admin) validate(p *problems) {
	if a.Listen == "" {
		if a.TokenFile != "" {
			p.add("config: admin.token_file is set but admin.listen is not: set admin.listen to open the TCP admin listener, or remove admin.token_file")
		}
		return
	}
	if _, _, err := net.SplitHostPort(a.Listen); err != nil {
		p.add("config: admin.listen: %q: want host:port, e.g. \"127.0.0.1:8026\"", a.Listen)
	}
	if a.TokenFile == "" {
		p.add("config: admin.token_file: must be set when admin.listen is: a file holding the bearer token every request must carry (e.g. \"openssl rand -hex 32 > /etc/moat/admin.token\")")
	}
}

// validate checks the metrics listener and the chart's step.
func (m Metrics) validate(p *problems) {
	if m.Listen != "" {
		if _, _, err := net.SplitHostPort(m.Listen); err != nil {
			p.add("config: metrics.listen: %q: want host:port, e.g. \"127.0.0.1:9325\", or \"\" for no listener of its own", m.Listen)
		}
	}
	if d := m.ChartStep.Duration; d < time.Second || d > time.Hour {
		p.add("config: metrics.chart_step: %s: want between \"1s\" and \"1h\" (default \"1m\": 360 bars show six hours)", m.ChartStep)
	}
}

func (r Redis) validate(p *problems) {
	if r.Prefix == "" || strings.ContainsAny(r.Prefix, " \t\r\n*?[]\\") {
		p.add("config: redis.prefix: %q: want a key prefix without spaces or glob characters, e.g. \"moat:\" (default)", r.Prefix)
	}
	if r.Timeout.Duration <= 0 || r.Timeout.Duration > time.Minute {
		p.add("config: redis.timeout: %s: want between \"1ms\" and \"1m\" (default \"1s\")", r.Timeout)
	}
	if r.CacheTTL.Duration <= 0 || r.CacheTTL.Duration > time.Minute {
		p.add("config: redis.cache_ttl: %s: want between \"1ms\" and \"1m\" (default \"2s\"): a change made on another MX host may take this long to show here", r.CacheTTL)
	}
	if r.StaleTTL.Duration < r.CacheTTL.Duration {
		p.add("config: redis.stale_ttl (%s) must be at least redis.cache_ttl (%s) (default \"10m\")", r.StaleTTL, r.CacheTTL)
	}
}

// problems collects what validate finds.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

func (p problems) err() error { return errors.Join(p...) }

// isDomain reports whether d can be a mail domain as an operator writes it:
// not empty, no address, space, bracket or leading dot.
func isDomain(d string) bool {
	return d != "" && !strings.ContainsAny(d, "@ \t\r\n[]<>") && !strings.HasPrefix(d, ".")
}
