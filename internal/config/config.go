// Package config loads moat's TOML configuration.
//
// Loading is strict: an unknown key, a value of the wrong type or a value out
// of range stops start-up with an error that names the key and says what to
// write instead. Every key has a default (see Default and docs/config.md), so
// moat runs with no file at all.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"moat/internal/prefix"
)

// Config is the validated configuration. Durations are parsed, CIDRs are
// parsed, paths are as written.
type Config struct {
	Listen               string
	Hostname             string
	Backend              string
	BackendProxyProtocol string // "v2", "v1" or "none"
	DataDir              string
	Store                string // "" or "bolt": the embedded file; "redis://…": shared
	Whitelist            []netip.Prefix
	Blacklist            []netip.Prefix
	TrustedProxies       []netip.Prefix
	BlackTTL             time.Duration

	Greylist Greylist
	Tarpit   Tarpit
	Traps    Traps
	Bait     Bait
	TLS      TLS
	Limits   Limits
	Admin    Admin
	Log      Log
	Redis    Redis

	Reputation Reputation // reputation.go
}

// Redis is the [redis] table: how a redis store names its keys and keeps
// its local cache. It matters only when store is a redis URL.
type Redis struct {
	Prefix   string        // start of every key and of the change channel
	Timeout  time.Duration // dial, read and write timeout of one request
	CacheTTL time.Duration // how long a cached host or triplet is used without asking Redis
	StaleTTL time.Duration // how long cached entries still answer while Redis is unreachable
}

// Greylist is the [greylist] table.
type Greylist struct {
	GreetDelay  time.Duration
	MinRetry    time.Duration
	RetryWindow time.Duration
	WhiteTTL    time.Duration
	IPv4Prefix  int
	IPv6Prefix  int
}

// Tarpit is the [tarpit] table.
type Tarpit struct {
	Stutter     time.Duration
	MaxConns    int
	MaxBytes    int64
	MaxDuration time.Duration
	IdleTimeout time.Duration
}

// Traps is the [traps] table.
type Traps struct {
	Addresses     []string
	Domains       []string // domains mined candidates may be in; empty: learned from the backend
	MinHosts      int      // distinct hosts that make an address a candidate
	Auto          string   // "suggest", "promote" or "off"
	Follow        []string // log files to follow for "User unknown" rejections
	RejectPattern string   // regexp with named groups client and addr
}

// DefaultRejectPattern matches Postfix's "User unknown" rejections, e.g.
//
//	NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 5.1.1 <a@example.org>: Recipient address rejected: User unknown in virtual mailbox table;
const DefaultRejectPattern = `reject: RCPT from [^\[\]]*\[(?P<client>[0-9A-Fa-f:.]+)\](?::\d+)?: 5\d\d 5\.1\.1 <(?P<addr>[^<>\s]+)>: Recipient address rejected: User unknown`

// Bait is the [bait] table: the page that publishes bait addresses.
type Bait struct {
	Listen         string // host:port of the bait HTTP server; "": off
	Domain         string // domain of minted addresses
	SecretFile     string // HMAC key; default data_dir/bait.key
	Count          int    // addresses per page view
	TrustedProxies []netip.Prefix
}

// TLS is the [tls] table.
type TLS struct {
	Cert string
	Key  string
}

// Limits is the [limits] table: bounds on what one client may cost.
type Limits struct {
	MaxConns       int
	MaxConnsPerIP  int
	MaxRcpts       int
	MaxMessageSize int64
	MaxCommands    int
	MaxErrors      int
	IdleTimeout    time.Duration
	DataTimeout    time.Duration
	BackendTimeout time.Duration
}

// Admin is the [admin] table.
type Admin struct {
	Socket    string // default: data_dir/moat.sock
	Listen    string // host:port of the TCP admin listener; "": off
	TokenFile string // bearer token for Listen; required when Listen is set
}

// Log is the [log] table.
type Log struct {
	Level  string // debug, info, warn, error
	Format string // json or text
}

// Default returns the configuration moat runs with when no file is given.
func Default() *Config {
	return &Config{
		Listen:               "127.0.0.1:2525",
		Hostname:             defaultHostname(),
		Backend:              "127.0.0.1:10025",
		BackendProxyProtocol: "v2",
		DataDir:              "./moat-data",
		BlackTTL:             24 * time.Hour,
		Greylist: Greylist{
			GreetDelay:  5 * time.Second,
			MinRetry:    time.Minute,
			RetryWindow: 24 * time.Hour,
			WhiteTTL:    864 * time.Hour,
			IPv4Prefix:  24,
			IPv6Prefix:  64,
		},
		Tarpit: Tarpit{
			Stutter:     time.Second,
			MaxConns:    15000,
			MaxBytes:    10 << 20,
			MaxDuration: 30 * time.Minute,
			IdleTimeout: 5 * time.Minute,
		},
		Limits: Limits{
			MaxConns:       19000,
			MaxConnsPerIP:  50,
			MaxRcpts:       100,
			MaxMessageSize: 50 << 20,
			MaxCommands:    1000,
			MaxErrors:      10,
			IdleTimeout:    5 * time.Minute,
			DataTimeout:    10 * time.Minute,
			BackendTimeout: 5 * time.Minute,
		},
		Traps:      Traps{MinHosts: 3, Auto: "suggest", RejectPattern: DefaultRejectPattern},
		Bait:       Bait{Count: 3},
		Log:        Log{Level: "info", Format: "json"},
		Reputation: defaultReputation(),
		Redis:      Redis{Prefix: "moat:", Timeout: time.Second, CacheTTL: 2 * time.Second, StaleTTL: 10 * time.Minute},
	}
}

func defaultHostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// file mirrors the TOML layout. Pointers tell "not set" from "set to zero",
// so a key that is absent keeps its default.
type file struct {
	Listen               *string   `toml:"listen"`
	Hostname             *string   `toml:"hostname"`
	Backend              *string   `toml:"backend"`
	BackendProxyProtocol *string   `toml:"backend_proxy_protocol"`
	DataDir              *string   `toml:"data_dir"`
	Store                *string   `toml:"store"`
	Whitelist            *[]string `toml:"whitelist"`
	Blacklist            *[]string `toml:"blacklist"`
	TrustedProxies       *[]string `toml:"trusted_proxies"`
	BlackTTL             *string   `toml:"black_ttl"`
	Greylist             *struct {
		GreetDelay  *string `toml:"greet_delay"`
		MinRetry    *string `toml:"min_retry"`
		RetryWindow *string `toml:"retry_window"`
		WhiteTTL    *string `toml:"white_ttl"`
		IPv4Prefix  *int    `toml:"ipv4_prefix"`
		IPv6Prefix  *int    `toml:"ipv6_prefix"`
	} `toml:"greylist"`
	Tarpit *struct {
		Stutter     *string `toml:"stutter"`
		MaxConns    *int    `toml:"max_conns"`
		MaxBytes    *int64  `toml:"max_bytes"`
		MaxDuration *string `toml:"max_duration"`
		IdleTimeout *string `toml:"idle_timeout"`
	} `toml:"tarpit"`
	Traps *struct {
		Addresses     *[]string `toml:"addresses"`
		Domains       *[]string `toml:"domains"`
		MinHosts      *int      `toml:"min_hosts"`
		Auto          *string   `toml:"auto"`
		Follow        *[]string `toml:"follow"`
		RejectPattern *string   `toml:"reject_pattern"`
	} `toml:"traps"`
	Bait *struct {
		Listen         *string   `toml:"listen"`
		Domain         *string   `toml:"domain"`
		SecretFile     *string   `toml:"secret_file"`
		Count          *int      `toml:"count"`
		TrustedProxies *[]string `toml:"trusted_proxies"`
	} `toml:"bait"`
	TLS *struct {
		Cert *string `toml:"cert"`
		Key  *string `toml:"key"`
	} `toml:"tls"`
	Limits *struct {
		MaxConns       *int    `toml:"max_conns"`
		MaxConnsPerIP  *int    `toml:"max_conns_per_ip"`
		MaxRcpts       *int    `toml:"max_rcpts"`
		MaxMessageSize *int64  `toml:"max_message_size"`
		MaxCommands    *int    `toml:"max_commands"`
		MaxErrors      *int    `toml:"max_errors"`
		IdleTimeout    *string `toml:"idle_timeout"`
		DataTimeout    *string `toml:"data_timeout"`
		BackendTimeout *string `toml:"backend_timeout"`
	} `toml:"limits"`
	Admin *struct {
		Socket    *string `toml:"socket"`
		Listen    *string `toml:"listen"`
		TokenFile *string `toml:"token_file"`
	} `toml:"admin"`
	Log *struct {
		Level  *string `toml:"level"`
		Format *string `toml:"format"`
	} `toml:"log"`
	Redis *struct {
		Prefix   *string `toml:"prefix"`
		Timeout  *string `toml:"timeout"`
		CacheTTL *string `toml:"cache_ttl"`
		StaleTTL *string `toml:"stale_ttl"`
	} `toml:"redis"`
	Reputation *reputationFile `toml:"reputation"`
}

// Load reads and validates the file at path. An empty path gives the
// defaults.
func Load(path string) (*Config, error) {
	if path == "" {
		c := Default()
		return c, c.validate()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes and validates TOML text.
func Parse(text []byte) (*Config, error) {
	var f file
	dec := toml.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, decodeError(err)
	}
	c := Default()
	p := parser{}
	p.str(&c.Listen, f.Listen)
	p.str(&c.Hostname, f.Hostname)
	p.str(&c.Backend, f.Backend)
	p.str(&c.BackendProxyProtocol, f.BackendProxyProtocol)
	p.str(&c.DataDir, f.DataDir)
	p.str(&c.Store, f.Store)
	p.cidrs(&c.Whitelist, "whitelist", f.Whitelist)
	p.cidrs(&c.Blacklist, "blacklist", f.Blacklist)
	p.cidrs(&c.TrustedProxies, "trusted_proxies", f.TrustedProxies)
	p.dur(&c.BlackTTL, "black_ttl", f.BlackTTL)
	if g := f.Greylist; g != nil {
		p.dur(&c.Greylist.GreetDelay, "greylist.greet_delay", g.GreetDelay)
		p.dur(&c.Greylist.MinRetry, "greylist.min_retry", g.MinRetry)
		p.dur(&c.Greylist.RetryWindow, "greylist.retry_window", g.RetryWindow)
		p.dur(&c.Greylist.WhiteTTL, "greylist.white_ttl", g.WhiteTTL)
		p.int(&c.Greylist.IPv4Prefix, g.IPv4Prefix)
		p.int(&c.Greylist.IPv6Prefix, g.IPv6Prefix)
	}
	if t := f.Tarpit; t != nil {
		p.dur(&c.Tarpit.Stutter, "tarpit.stutter", t.Stutter)
		p.int(&c.Tarpit.MaxConns, t.MaxConns)
		p.int64(&c.Tarpit.MaxBytes, t.MaxBytes)
		p.dur(&c.Tarpit.MaxDuration, "tarpit.max_duration", t.MaxDuration)
		p.dur(&c.Tarpit.IdleTimeout, "tarpit.idle_timeout", t.IdleTimeout)
	}
	if t := f.Traps; t != nil && t.Addresses != nil {
		c.Traps.Addresses = *t.Addresses
	}
	if t := f.Traps; t != nil {
		p.strs(&c.Traps.Domains, t.Domains)
		p.int(&c.Traps.MinHosts, t.MinHosts)
		p.str(&c.Traps.Auto, t.Auto)
		p.strs(&c.Traps.Follow, t.Follow)
		p.str(&c.Traps.RejectPattern, t.RejectPattern)
	}
	if b := f.Bait; b != nil {
		p.str(&c.Bait.Listen, b.Listen)
		p.str(&c.Bait.Domain, b.Domain)
		p.str(&c.Bait.SecretFile, b.SecretFile)
		p.int(&c.Bait.Count, b.Count)
		p.cidrs(&c.Bait.TrustedProxies, "bait.trusted_proxies", b.TrustedProxies)
	}
	if t := f.TLS; t != nil {
		p.str(&c.TLS.Cert, t.Cert)
		p.str(&c.TLS.Key, t.Key)
	}
	if l := f.Limits; l != nil {
		p.int(&c.Limits.MaxConns, l.MaxConns)
		p.int(&c.Limits.MaxConnsPerIP, l.MaxConnsPerIP)
		p.int(&c.Limits.MaxRcpts, l.MaxRcpts)
		p.int64(&c.Limits.MaxMessageSize, l.MaxMessageSize)
		p.int(&c.Limits.MaxCommands, l.MaxCommands)
		p.int(&c.Limits.MaxErrors, l.MaxErrors)
		p.dur(&c.Limits.IdleTimeout, "limits.idle_timeout", l.IdleTimeout)
		p.dur(&c.Limits.DataTimeout, "limits.data_timeout", l.DataTimeout)
		p.dur(&c.Limits.BackendTimeout, "limits.backend_timeout", l.BackendTimeout)
	}
	if a := f.Admin; a != nil {
		p.str(&c.Admin.Socket, a.Socket)
		p.str(&c.Admin.Listen, a.Listen)
		p.str(&c.Admin.TokenFile, a.TokenFile)
	}
	if l := f.Log; l != nil {
		p.str(&c.Log.Level, l.Level)
		p.str(&c.Log.Format, l.Format)
	}
	if r := f.Redis; r != nil {
		p.str(&c.Redis.Prefix, r.Prefix)
		p.dur(&c.Redis.Timeout, "redis.timeout", r.Timeout)
		p.dur(&c.Redis.CacheTTL, "redis.cache_ttl", r.CacheTTL)
		p.dur(&c.Redis.StaleTTL, "redis.stale_ttl", r.StaleTTL)
	}
	p.reputation(&c.Reputation, f.Reputation)
	if p.err != nil {
		return nil, p.err
	}
	return c, c.validate()
}

// decodeError rewrites go-toml's errors so they name the key.
func decodeError(err error) error {
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) && len(sm.Errors) > 0 {
		var keys []string
		for _, e := range sm.Errors {
			keys = append(keys, strings.Join(e.Key(), "."))
		}
		return fmt.Errorf("config: unknown key %s: check its spelling against docs/config.md", strings.Join(keys, ", "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		key := strings.Join(de.Key(), ".")
		msg := de.Error()
		if m := typeErr.FindStringSubmatch(msg); m != nil {
			msg = "a TOML " + m[1] + " where " + kindOf(m[2]) + " is expected"
			if m[1] == "integer" && kindOf(m[2]) == "a string" {
				msg += " (durations are quoted strings like \"5m\")"
			}
		}
		if key != "" {
			return fmt.Errorf("config: %s (line %d, column %d): %s", key, row, col, msg)
		}
		return fmt.Errorf("config: line %d, column %d: %s", row, col, de.Error())
	}
	return fmt.Errorf("config: %w", err)
}

var typeErr = regexp.MustCompile(`cannot decode TOML (\w+) into .* of type (\S+)$`)

func kindOf(goType string) string {
	switch {
	case strings.Contains(goType, "[]"):
		return "a list"
	case strings.Contains(goType, "string"):
		return "a string"
	case strings.Contains(goType, "int"):
		return "an integer"
	}
	return "another type"
}

// parser keeps the first error so Parse reads as a list of assignments.
type parser struct{ err error }

func (p *parser) str(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}

func (p *parser) strs(dst *[]string, v *[]string) {
	if v != nil {
		*dst = *v
	}
}

func (p *parser) int(dst *int, v *int) {
	if v != nil {
		*dst = *v
	}
}

func (p *parser) int64(dst *int64, v *int64) {
	if v != nil {
		*dst = *v
	}
}

func (p *parser) dur(dst *time.Duration, key string, v *string) {
	if v == nil || p.err != nil {
		return
	}
	d, err := ParseDuration(*v)
	if err != nil {
		p.err = fmt.Errorf("config: %s: %q: not a duration (write e.g. \"90s\", \"5m\", \"24h\" or \"36d\")", key, *v)
		return
	}
	if d < 0 {
		p.err = fmt.Errorf("config: %s: %q: must not be negative", key, *v)
		return
	}
	*dst = d
}

func (p *parser) cidrs(dst *[]netip.Prefix, key string, v *[]string) {
	if v == nil || p.err != nil {
		return
	}
	out := make([]netip.Prefix, 0, len(*v))
	for i, s := range *v {
		pfx, err := ParsePrefix(s)
		if err != nil {
			p.err = fmt.Errorf("config: %s[%d]: %q: not an address or CIDR (write e.g. \"192.0.2.0/24\", \"2001:db8::/32\" or \"192.0.2.7\")", key, i, s)
			return
		}
		out = append(out, pfx)
	}
	*dst = out
}

// ParsePrefix is prefix.Parse, kept for callers that named it here.
func ParsePrefix(s string) (netip.Prefix, error) { return prefix.Parse(s) }

// ParseDuration is time.ParseDuration plus a "d" (day) unit, because mail
// administrators think of white_ttl in days.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") && !strings.ContainsAny(s[:len(s)-1], "hmsuµn") {
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "d"), 64)
		if err != nil {
			return 0, err
		}
		if math.IsNaN(n) || math.IsInf(n, 0) || math.Abs(n) > float64(math.MaxInt64)/float64(24*time.Hour) {
			return 0, fmt.Errorf("%s: out of range", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	return time.ParseDuration(s)
}

func (c *Config) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("config: listen: %q: want host:port, e.g. \":25\" or \"192.0.2.1:25\"", c.Listen)
	}
	if _, _, err := net.SplitHostPort(c.Backend); err != nil {
		return fmt.Errorf("config: backend: %q: want host:port of the real mail server, e.g. \"127.0.0.1:10025\"", c.Backend)
	}
	switch c.BackendProxyProtocol {
	case "v1", "v2", "none":
	default:
		return fmt.Errorf("config: backend_proxy_protocol: %q: want \"v2\", \"v1\" or \"none\"", c.BackendProxyProtocol)
	}
	if c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t\r\n") {
		return fmt.Errorf("config: hostname: %q: want the host name for the banner, e.g. \"mx.example.org\"", c.Hostname)
	}
	if c.DataDir == "" {
		return fmt.Errorf("config: data_dir: must not be empty (default \"./moat-data\")")
	}
	switch {
	case c.Store == "", c.Store == "bolt", strings.HasPrefix(c.Store, "redis://"),
		strings.HasPrefix(c.Store, "rediss://"), strings.HasPrefix(c.Store, "redis-sentinel://"),
		strings.HasPrefix(c.Store, "rediss-sentinel://"), strings.HasPrefix(c.Store, "redis-cluster://"),
		strings.HasPrefix(c.Store, "rediss-cluster://"):
	default:
		return fmt.Errorf("config: store: %q: want \"bolt\" (default) or a redis://, rediss://, redis-sentinel:// or redis-cluster:// URL (see docs/redis.md)", c.Store)
	}
	if err := c.Redis.validate(); err != nil {
		return err
	}
	if err := c.Reputation.validate(); err != nil {
		return err
	}
	g := c.Greylist
	if g.MinRetry >= g.RetryWindow {
		return fmt.Errorf("config: greylist.min_retry (%s) must be shorter than greylist.retry_window (%s)", g.MinRetry, g.RetryWindow)
	}
	if g.WhiteTTL <= 0 {
		return fmt.Errorf("config: greylist.white_ttl must be positive (default \"864h\")")
	}
	if g.GreetDelay > 5*time.Minute {
		return fmt.Errorf("config: greylist.greet_delay: %s is longer than the 5 minutes senders wait for a banner (RFC 5321 4.5.3.2); use at most \"30s\"", g.GreetDelay)
	}
	if g.IPv4Prefix < 8 || g.IPv4Prefix > 32 {
		return fmt.Errorf("config: greylist.ipv4_prefix: %d: want 8..32 (default 24)", g.IPv4Prefix)
	}
	if g.IPv6Prefix < 16 || g.IPv6Prefix > 128 {
		return fmt.Errorf("config: greylist.ipv6_prefix: %d: want 16..128 (default 64)", g.IPv6Prefix)
	}
	if c.BlackTTL <= 0 {
		return fmt.Errorf("config: black_ttl must be positive (default \"24h\")")
	}
	t := c.Tarpit
	if t.Stutter <= 0 || t.Stutter > time.Minute {
		return fmt.Errorf("config: tarpit.stutter: %s: want between \"1ms\" and \"1m\" (default \"1s\")", t.Stutter)
	}
	if t.MaxConns < 1 {
		return fmt.Errorf("config: tarpit.max_conns: %d: must be at least 1 (default 15000)", t.MaxConns)
	}
	if t.MaxBytes < 1024 {
		return fmt.Errorf("config: tarpit.max_bytes: %d: must be at least 1024 (default 10485760)", t.MaxBytes)
	}
	l := c.Limits
	for _, kv := range []struct {
		key string
		v   int64
	}{
		{"limits.max_conns", int64(l.MaxConns)},
		{"limits.max_conns_per_ip", int64(l.MaxConnsPerIP)},
		{"limits.max_rcpts", int64(l.MaxRcpts)},
		{"limits.max_message_size", l.MaxMessageSize},
		{"limits.max_commands", int64(l.MaxCommands)},
		{"limits.max_errors", int64(l.MaxErrors)},
	} {
		if kv.v < 1 {
			return fmt.Errorf("config: %s: %d: must be at least 1", kv.key, kv.v)
		}
	}
	if t.MaxConns >= l.MaxConns {
		return fmt.Errorf("config: tarpit.max_conns (%d) must be below limits.max_conns (%d), so white and grey hosts keep a reserve when the tarpit is full", t.MaxConns, l.MaxConns)
	}
	for _, kv := range []struct {
		key string
		v   time.Duration
	}{
		{"limits.idle_timeout", l.IdleTimeout},
		{"limits.data_timeout", l.DataTimeout},
		{"limits.backend_timeout", l.BackendTimeout},
		{"tarpit.max_duration", t.MaxDuration},
		{"tarpit.idle_timeout", t.IdleTimeout},
	} {
		if kv.v <= 0 {
			return fmt.Errorf("config: %s: must be positive", kv.key)
		}
	}
	if err := c.Admin.validate(); err != nil {
		return err
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return fmt.Errorf("config: tls.cert and tls.key must be set together (or neither, to not offer STARTTLS)")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log.level: %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		return fmt.Errorf("config: log.format: %q: want json or text", c.Log.Format)
	}
	for i, a := range c.Traps.Addresses {
		if !strings.Contains(a, "@") {
			return fmt.Errorf("config: traps.addresses[%d]: %q: want a full address, e.g. \"trap@example.org\"", i, a)
		}
	}
	return c.validateMining()
}

// validateMining checks the trap mining and bait keys.
func (c *Config) validateMining() error {
	t := c.Traps
	for i, d := range t.Domains {
		if d == "" || strings.ContainsAny(d, "@ \t\r\n[]<>") {
			return fmt.Errorf("config: traps.domains[%d]: %q: want a domain, e.g. \"example.org\"", i, d)
		}
	}
	if t.MinHosts < 1 || t.MinHosts > 16 {
		return fmt.Errorf("config: traps.min_hosts: %d: want 1..16 (default 3)", t.MinHosts)
	}
	switch t.Auto {
	case "suggest", "promote", "off":
	default:
		return fmt.Errorf("config: traps.auto: %q: want \"suggest\" (default), \"promote\" or \"off\"", t.Auto)
	}
	for i, f := range t.Follow {
		if f == "" {
			return fmt.Errorf("config: traps.follow[%d]: empty path: want a log file, e.g. \"/var/log/mail.log\"", i)
		}
	}
	re, err := regexp.Compile(t.RejectPattern)
	if err != nil {
		return fmt.Errorf("config: traps.reject_pattern: not a regular expression: %v", err)
	}
	if re.SubexpIndex("client") < 0 || re.SubexpIndex("addr") < 0 {
		return fmt.Errorf("config: traps.reject_pattern: needs the named groups (?P<client>…) for the client's IP address and (?P<addr>…) for the recipient")
	}
	b := c.Bait
	if b.Listen != "" {
		if _, _, err := net.SplitHostPort(b.Listen); err != nil {
			return fmt.Errorf("config: bait.listen: %q: want host:port, e.g. \"127.0.0.1:8025\"", b.Listen)
		}
		if b.Domain == "" {
			return fmt.Errorf("config: bait.domain: must be set when bait.listen is: the domain of the bait addresses, e.g. \"example.org\"")
		}
	}
	if b.Domain != "" && (strings.ContainsAny(b.Domain, "@ \t\r\n[]<>") || strings.HasPrefix(b.Domain, ".")) {
		return fmt.Errorf("config: bait.domain: %q: want a domain, e.g. \"example.org\"", b.Domain)
	}
	if b.Count < 1 || b.Count > 20 {
		return fmt.Errorf("config: bait.count: %d: want 1..20 (default 3)", b.Count)
	}
	return nil
}

// BaitKeyFile is the path of the bait HMAC key.
func (c *Config) BaitKeyFile() string {
	if c.Bait.SecretFile != "" {
		return c.Bait.SecretFile
	}
	return strings.TrimSuffix(c.DataDir, "/") + "/bait.key"
}

// validate checks the TCP admin listener: it is never open without a token.
func (a Admin) validate() error {
	if a.Listen == "" {
		if a.TokenFile != "" {
			return fmt.Errorf("config: admin.token_file is set but admin.listen is not: set admin.listen to open the TCP admin listener, or remove admin.token_file")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(a.Listen); err != nil {
		return fmt.Errorf("config: admin.listen: %q: want host:port, e.g. \"127.0.0.1:8026\"", a.Listen)
	}
	if a.TokenFile == "" {
		return fmt.Errorf("config: admin.token_file: must be set when admin.listen is: a file holding the bearer token every request must carry (e.g. \"openssl rand -hex 32 > /etc/moat/admin.token\")")
	}
	return nil
}

// AdminSocket is the path of the admin socket.
func (c *Config) AdminSocket() string {
	if c.Admin.Socket != "" {
		return c.Admin.Socket
	}
	return strings.TrimSuffix(c.DataDir, "/") + "/moat.sock"
}

func (r Redis) validate() error {
	if r.Prefix == "" || strings.ContainsAny(r.Prefix, " \t\r\n*?[]\\") {
		return fmt.Errorf("config: redis.prefix: %q: want a key prefix without spaces or glob characters, e.g. \"moat:\" (default)", r.Prefix)
	}
	if r.Timeout <= 0 || r.Timeout > time.Minute {
		return fmt.Errorf("config: redis.timeout: %s: want between \"1ms\" and \"1m\" (default \"1s\")", r.Timeout)
	}
	if r.CacheTTL <= 0 || r.CacheTTL > time.Minute {
		return fmt.Errorf("config: redis.cache_ttl: %s: want between \"1ms\" and \"1m\" (default \"2s\"): a change made on another MX host may take this long to show here", r.CacheTTL)
	}
	if r.StaleTTL < r.CacheTTL {
		return fmt.Errorf("config: redis.stale_ttl (%s) must be at least redis.cache_ttl (%s) (default \"10m\")", r.StaleTTL, r.CacheTTL)
	}
	return nil
}
