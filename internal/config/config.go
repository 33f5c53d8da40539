// Package config loads moat's TOML configuration.
//
// The schema is written once: the toml tags on the types below. Loading is
// strict: an unknown key, a value of the wrong type or a value out of range
// stops start-up with an error that names the key and says what to write
// instead. Every key has a default (see Default and docs/config.md), so
// moat runs with no file at all, and a file only overrides the keys it
// holds.
//
// config is a leaf: it imports no moat package but the two that hold the
// syntax of what it reads (prefix for addresses and networks, dnsbl for DNS
// list entries), which import only the standard library.
package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Config is the validated configuration.
type Config struct {
	Mode                 string `toml:"mode"` // "enforce" or "observe"
	Listen               string `toml:"listen"`
	Hostname             string `toml:"hostname"`
	Backend              string `toml:"backend"`
	BackendProxyProtocol string `toml:"backend_proxy_protocol"` // "v2", "v1" or "none"
	DataDir              string `toml:"data_dir"`
	// Domains are every domain the backend takes mail for; a black host
	// asking to relay elsewhere proves itself a bot. Empty: moat does not
	// know its domains, and nothing is a relay attempt.
	Domains        []string `toml:"domains"`
	Store          string   `toml:"store"` // "" or "bolt": the embedded file; "redis://…": shared
	Whitelist      Prefixes `toml:"whitelist"`
	Blacklist      Prefixes `toml:"blacklist"`
	TrustedProxies Prefixes `toml:"trusted_proxies"`
	BlackTTL       Duration `toml:"black_ttl"`
	// User is who moat runs as once its sockets and files are open; ""
	// keeps the user it was started as.
	User string `toml:"user"`

	Greylist Greylist `toml:"greylist"`
	Tarpit   Tarpit   `toml:"tarpit"`
	Traps    Traps    `toml:"traps"`
	Bait     Bait     `toml:"bait"`
	TLS      TLS      `toml:"tls"`
	Limits   Limits   `toml:"limits"`
	Admin    Admin    `toml:"admin"`
	Metrics  Metrics  `toml:"metrics"`
	Log      Log      `toml:"log"`
	Redis    Redis    `toml:"redis"`

	Reputation Reputation `toml:"reputation"` // reputation.go
	Bypass     Bypass     `toml:"bypass"`     // bypass.go
}

// Redis is the [redis] table: how a redis store names its keys and keeps
// its local cache. It matters only when store is a redis URL.
type Redis struct {
	Prefix   string   `toml:"prefix"`    // start of every key and of the change channel
	Timeout  Duration `toml:"timeout"`   // dial, read and write timeout of one request
	CacheTTL Duration `toml:"cache_ttl"` // how long a cached host or triplet is used without asking Redis
	StaleTTL Duration `toml:"stale_ttl"` // how long cached entries still answer while Redis is unreachable
}

// Greylist is the [greylist] table.
type Greylist struct {
	GreetDelay  Duration `toml:"greet_delay"`
	MinRetry    Duration `toml:"min_retry"`
	RetryWindow Duration `toml:"retry_window"`
	WhiteTTL    Duration `toml:"white_ttl"`
	IPv4Prefix  int      `toml:"ipv4_prefix"`
	IPv6Prefix  int      `toml:"ipv6_prefix"`
	// PassOnNextRetry: the qualifying retry is deferred once more and the
	// triplet passes at its next attempt (spamd's behaviour).
	PassOnNextRetry bool `toml:"pass_on_next_retry"`
}

// Tarpit is the [tarpit] table.
type Tarpit struct {
	Stutter     Duration   `toml:"stutter"`
	MaxConns    int        `toml:"max_conns"`
	MaxBytes    Size       `toml:"max_bytes"`
	MaxDuration Duration   `toml:"max_duration"`
	IdleTimeout Duration   `toml:"idle_timeout"`
	DataPace    int        `toml:"data_pace"` // bytes of a message read per stutter
	FinalReply  FinalReply `toml:"final_reply"`
}

// FinalReply is the [tarpit.final_reply] table: the tarpit's reply at the
// end of DATA by why the host is black, "accept" (250, the message is
// dropped), "defer" (451) or "reject" (554).
type FinalReply struct {
	Trap       string `toml:"trap"`
	Bait       string `toml:"bait"`
	EarlyTalk  string `toml:"early_talk"`
	Smuggling  string `toml:"smuggling"`
	Relay      string `toml:"relay"`
	Operator   string `toml:"operator"`
	DNSBL      string `toml:"dnsbl"`
	Feedback   string `toml:"feedback"`
	Escalation string `toml:"escalation"`
	NetList    string `toml:"netlist"`
	Import     string `toml:"import"`
}

// ByReason returns the replies keyed by the reason's name as moat writes
// it everywhere else (logs, "moat hosts show"): "trap", "early-talk", ….
func (f FinalReply) ByReason() map[string]string {
	return map[string]string{
		"trap": f.Trap, "bait": f.Bait, "early-talk": f.EarlyTalk, "smuggling": f.Smuggling, "relay": f.Relay,
		"operator": f.Operator, "dnsbl": f.DNSBL, "feedback": f.Feedback, "escalation": f.Escalation,
		"netlist": f.NetList, "import": f.Import,
	}
}

// Traps is the [traps] table.
type Traps struct {
	Addresses     []string `toml:"addresses"`
	Domains       []string `toml:"domains"`        // domains mined candidates may be in; empty: learned from the backend
	MinHosts      int      `toml:"min_hosts"`      // distinct hosts that make an address a candidate
	Auto          string   `toml:"auto"`           // "suggest", "promote" or "off"
	Follow        []string `toml:"follow"`         // log files to follow for "User unknown" rejections
	RejectPattern string   `toml:"reject_pattern"` // "": Postfix's reject records read by their fields; else a regexp with groups client and addr, anchored after the queue id
}

// DefaultRejectPattern is the pattern earlier versions searched log lines
// with, kept for configurations that spell it out: matched at the start of
// the text after the queue id, as every reject_pattern now is, it reads
// Postfix's "User unknown" rejections, e.g.
//
//	NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 5.1.1 <a@example.org>: Recipient address rejected: User unknown in virtual mailbox table;
const DefaultRejectPattern = `reject: RCPT from [^\[\]]*\[(?P<client>[0-9A-Fa-f:.]+)\](?::\d+)?: 5\d\d 5\.1\.1 <(?P<addr>[^<>\s]+)>: Recipient address rejected: User unknown`

// Bait is the [bait] table: the page that publishes bait addresses.
type Bait struct {
	Listen         string   `toml:"listen"`      // host:port of the bait HTTP server; "": off
	Domain         string   `toml:"domain"`      // domain of minted addresses
	SecretFile     string   `toml:"secret_file"` // HMAC key; default data_dir/bait.key
	Count          int      `toml:"count"`       // addresses per page view
	TrustedProxies Prefixes `toml:"trusted_proxies"`
}

// TLS is the [tls] table.
type TLS struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// Limits is the [limits] table: bounds on what one client may cost.
type Limits struct {
	MaxConns        int      `toml:"max_conns"`
	MaxConnsPerIP   int      `toml:"max_conns_per_ip"`
	MaxRcpts        int      `toml:"max_rcpts"`
	MaxMessageSize  Size     `toml:"max_message_size"`
	MaxCommands     int      `toml:"max_commands"`
	MaxErrors       int      `toml:"max_errors"`
	IdleTimeout     Duration `toml:"idle_timeout"`
	DataTimeout     Duration `toml:"data_timeout"`      // per read of a message's data
	DataDoneTimeout Duration `toml:"data_done_timeout"` // for the backend's reply after the end of data
	MinDataRate     int      `toml:"min_data_rate"`     // bytes per second a message averages after data_timeout; 0: none
	BackendTimeout  Duration `toml:"backend_timeout"`
}

// Admin is the [admin] table.
type Admin struct {
	Socket    string `toml:"socket"`     // default: data_dir/moat.sock
	Listen    string `toml:"listen"`     // host:port of the TCP admin listener; "": off
	TokenFile string `toml:"token_file"` // bearer token for Listen; required when Listen is set
}

// Metrics is the [metrics] table: Prometheus metrics and the dashboard's
// chart. /metrics is always served on the admin listeners.
type Metrics struct {
	Listen    string   `toml:"listen"`     // host:port of a /metrics listener without a token; "": none
	ChartStep Duration `toml:"chart_step"` // the time one bar of the dashboard's sessions chart covers
}

// Log is the [log] table.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // json or text
	Output string `toml:"output"` // stderr or syslog
}

// Default returns the configuration moat runs with when no file is given.
func Default() *Config {
	return &Config{
		Mode:                 "enforce",
		Listen:               "127.0.0.1:2525",
		Hostname:             defaultHostname(),
		Backend:              "127.0.0.1:10025",
		BackendProxyProtocol: "v2",
		DataDir:              "./moat-data",
		BlackTTL:             Duration{24 * time.Hour},
		Greylist: Greylist{
			GreetDelay:  Duration{5 * time.Second},
			MinRetry:    Duration{time.Minute},
			RetryWindow: Duration{24 * time.Hour},
			WhiteTTL:    Duration{864 * time.Hour},
			IPv4Prefix:  24,
			IPv6Prefix:  64,
		},
		Tarpit: Tarpit{
			Stutter:     Duration{time.Second},
			MaxConns:    15000,
			MaxBytes:    10 << 20,
			MaxDuration: Duration{30 * time.Minute},
			IdleTimeout: Duration{5 * time.Minute},
			DataPace:    16,
			// What proves a bot is told 250; a mistake costs a delay,
			// never a message (the split is classify.Proves).
			FinalReply: FinalReply{
				Trap: "accept", Bait: "accept", EarlyTalk: "accept", Smuggling: "accept", Relay: "accept",
				Operator: "defer", DNSBL: "defer", Feedback: "defer", Escalation: "defer", NetList: "defer", Import: "defer",
			},
		},
		Limits: Limits{
			MaxConns:        19000,
			MaxConnsPerIP:   50,
			MaxRcpts:        100,
			MaxMessageSize:  50 << 20,
			MaxCommands:     1000,
			MaxErrors:       10,
			IdleTimeout:     Duration{5 * time.Minute},
			DataTimeout:     Duration{3 * time.Minute},
			DataDoneTimeout: Duration{10 * time.Minute},
			MinDataRate:     500,
			BackendTimeout:  Duration{5 * time.Minute},
		},
		Traps:      Traps{MinHosts: 3, Auto: "suggest"},
		Bait:       Bait{Count: 3},
		Log:        Log{Level: "info", Format: "json", Output: "stderr"},
		Metrics:    Metrics{ChartStep: Duration{time.Minute}},
		Reputation: defaultReputation(),
		Bypass:     defaultBypass(),
		Redis:      Redis{Prefix: "moat:", Timeout: Duration{time.Second}, CacheTTL: Duration{2 * time.Second}, StaleTTL: Duration{10 * time.Minute}},
	}
}

func defaultHostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// SystemPath is the file moat reads when no -c is given and it exists, as
// Postfix reads /etc/postfix/main.cf.
const SystemPath = "/etc/moat/moat.toml"

// Source names where Load(path) takes the configuration from, for messages:
// path, or "built-in defaults" for none.
func Source(path string) string {
	if path == "" {
		return "built-in defaults"
	}
	return path
}

// Load reads and validates the file at path. An empty path gives the
// defaults. Each of the problems it finds is a line of the error, with
// the path in front.
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
		return nil, prefixEach(path, err)
	}
	return c, nil
}

// Parse decodes and validates TOML text. Keys the text does not hold keep
// their defaults.
func Parse(text []byte) (*Config, error) {
	c := Default()
	if err := decode(text, c); err != nil {
		return nil, err
	}
	return c, c.validate()
}

// BaitKeyFile is the path of the bait HMAC key.
func (c *Config) BaitKeyFile() string {
	if c.Bait.SecretFile != "" {
		return c.Bait.SecretFile
	}
	return strings.TrimSuffix(c.DataDir, "/") + "/bait.key"
}

// AdminSocket is the path of the admin socket.
func (c *Config) AdminSocket() string {
	if c.Admin.Socket != "" {
		return c.Admin.Socket
	}
	return strings.TrimSuffix(c.DataDir, "/") + "/moat.sock"
}

// AdminSocketOf is the admin socket of the configuration at path, read
// leniently: "moat reload" must find the daemon to ask even when the file
// now has an error (the daemon refuses it and says why). Keys the file
// does not hold, or holds with a wrong type, keep their defaults.
func AdminSocketOf(path string) string {
	c := Default()
	if b, err := os.ReadFile(path); err == nil {
		var doc struct {
			DataDir any `toml:"data_dir"`
			Admin   struct {
				Socket any `toml:"socket"`
			} `toml:"admin"`
		}
		toml.Unmarshal(b, &doc)
		if s, ok := doc.DataDir.(string); ok && s != "" {
			c.DataDir = s
		}
		if s, ok := doc.Admin.Socket.(string); ok {
			c.Admin.Socket = s
		}
	}
	return c.AdminSocket()
}
