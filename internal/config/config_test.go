package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// sample sets every key to a value that differs from its default, so a key
// that is parsed into the wrong field (or not at all) shows.
const sample = `
mode = "observe"
listen = "0.0.0.0:25"
hostname = "mx.example.org"
backend = "127.0.0.1:10026"
backend_proxy_protocol = "v1"
data_dir = "/var/lib/moat"
store = "bolt"
whitelist = ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]
blacklist = ["203.0.113.0/24"]
trusted_proxies = ["10.0.0.1"]
black_ttl = "48h"
user = "moat"

[greylist]
greet_delay = "3s"
min_retry = "2m"
retry_window = "12h"
white_ttl = "30d"
ipv4_prefix = 28
ipv6_prefix = 56

[tarpit]
stutter = "2s"
max_conns = 1000
max_bytes = 2048
max_duration = "1h"
idle_timeout = "90s"

[tarpit.final_reply]
operator = "reject"
dnsbl = "accept"
early_talk = "defer"

[traps]
addresses = ["trap@example.org", "spam@example.net"]
domains = ["example.org", "example.net"]
min_hosts = 5
auto = "promote"
follow = ["/var/log/mail.log"]
reject_pattern = 'from \[(?P<client>[^]]+)\].*<(?P<addr>[^>]+)>: User unknown'

[bait]
listen = "127.0.0.1:8025"
domain = "bait.example.org"
secret_file = "/etc/moat/bait.key"
count = 5
trusted_proxies = ["127.0.0.1", "::1"]

[tls]
cert = "/etc/moat/cert.pem"
key = "/etc/moat/key.pem"

[limits]
max_conns = 2000
max_conns_per_ip = 20
max_rcpts = 50
max_message_size = 1048576
max_commands = 200
max_errors = 5
idle_timeout = "4m"
data_timeout = "8m"
data_done_timeout = "12m"
backend_timeout = "3m"

[admin]
socket = "/run/moat/admin.sock"

[metrics]
listen = "127.0.0.1:9325"
chart_step = "10s"

[log]
level = "debug"
format = "text"
output = "syslog"

[redis]
prefix = "mx:"
timeout = "2s"
cache_ttl = "5s"
stale_ttl = "1h"
`

func pfx(s ...string) Prefixes {
	out := make(Prefixes, len(s))
	for i, v := range s {
		out[i] = Prefix{netip.MustParsePrefix(v)}
	}
	return out
}

func dur(d time.Duration) Duration { return Duration{d} }

func TestLoadDefaults(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatalf("Load(\"\"): %v", err)
	}
	want := Default()
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load(\"\") = %+v, want Default() %+v", c, want)
	}
	// The defaults the documentation promises.
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, "127.0.0.1:2525"},
		{"backend", c.Backend, "127.0.0.1:10025"},
		{"backend_proxy_protocol", c.BackendProxyProtocol, "v2"},
		{"data_dir", c.DataDir, "./moat-data"},
		{"store", c.Store, ""},
		{"black_ttl", c.BlackTTL.Duration, 24 * time.Hour},
		{"greylist.greet_delay", c.Greylist.GreetDelay.Duration, 5 * time.Second},
		{"greylist.min_retry", c.Greylist.MinRetry.Duration, time.Minute},
		{"greylist.retry_window", c.Greylist.RetryWindow.Duration, 24 * time.Hour},
		{"greylist.white_ttl", c.Greylist.WhiteTTL.Duration, 36 * 24 * time.Hour},
		{"greylist.ipv4_prefix", c.Greylist.IPv4Prefix, 24},
		{"greylist.ipv6_prefix", c.Greylist.IPv6Prefix, 64},
		{"tarpit.stutter", c.Tarpit.Stutter.Duration, time.Second},
		{"tarpit.max_conns", c.Tarpit.MaxConns, 15000},
		{"tarpit.max_bytes", c.Tarpit.MaxBytes, Size(10 << 20)},
		{"tarpit.data_pace", c.Tarpit.DataPace, 16},
		{"tarpit.max_duration", c.Tarpit.MaxDuration.Duration, 30 * time.Minute},
		{"tarpit.idle_timeout", c.Tarpit.IdleTimeout.Duration, 5 * time.Minute},
		{"limits.max_conns", c.Limits.MaxConns, 19000},
		{"limits.max_conns_per_ip", c.Limits.MaxConnsPerIP, 50},
		{"limits.max_rcpts", c.Limits.MaxRcpts, 100},
		{"limits.max_message_size", c.Limits.MaxMessageSize, Size(50 << 20)},
		{"limits.max_commands", c.Limits.MaxCommands, 1000},
		{"limits.max_errors", c.Limits.MaxErrors, 10},
		{"limits.idle_timeout", c.Limits.IdleTimeout.Duration, 5 * time.Minute},
		{"limits.data_timeout", c.Limits.DataTimeout.Duration, 3 * time.Minute},
		{"limits.data_done_timeout", c.Limits.DataDoneTimeout.Duration, 10 * time.Minute},
		{"limits.min_data_rate", c.Limits.MinDataRate, 500},
		{"limits.backend_timeout", c.Limits.BackendTimeout.Duration, 5 * time.Minute},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "json"},
		{"admin socket", c.AdminSocket(), "./moat-data/moat.sock"},
		{"traps.min_hosts", c.Traps.MinHosts, 3},
		{"traps.auto", c.Traps.Auto, "suggest"},
		{"traps.reject_pattern", c.Traps.RejectPattern, ""},
		{"bait.listen", c.Bait.Listen, ""},
		{"bait.count", c.Bait.Count, 3},
		{"bait key file", c.BaitKeyFile(), "./moat-data/bait.key"},
		{"redis.prefix", c.Redis.Prefix, "moat:"},
		{"redis.timeout", c.Redis.Timeout.Duration, time.Second},
		{"redis.cache_ttl", c.Redis.CacheTTL.Duration, 2 * time.Second},
		{"redis.stale_ttl", c.Redis.StaleTTL.Duration, 10 * time.Minute},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("default %s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if c.Hostname == "" {
		t.Error("default hostname is empty")
	}
	if len(c.Whitelist)+len(c.Blacklist)+len(c.TrustedProxies)+len(c.Traps.Addresses)+
		len(c.Traps.Domains)+len(c.Traps.Follow)+len(c.Bait.TrustedProxies) != 0 {
		t.Error("default lists are not empty")
	}
	if c.TLS.Cert != "" || c.TLS.Key != "" {
		t.Error("default offers TLS")
	}
}

func TestLoadEmptyFileIsDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.toml")
	if err := os.WriteFile(path, []byte("# nothing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("empty file: got %+v, want defaults", c)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "nope.toml") {
		t.Errorf("Load of a missing file: err = %v, want one naming the file", err)
	}
}

func TestLoadErrorNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.toml")
	if err := os.WriteFile(path, []byte("black_ttl = \"5x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "black_ttl") {
		t.Errorf("err = %v, want one naming the file and the key", err)
	}
}

func TestParseSample(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.toml")
	if err := os.WriteFile(path, []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load(sample): %v", err)
	}
	final := Default().Tarpit.FinalReply
	final.Operator, final.DNSBL, final.EarlyTalk = "reject", "accept", "defer"
	want := &Config{
		Mode:                 "observe",
		Listen:               "0.0.0.0:25",
		Hostname:             "mx.example.org",
		Backend:              "127.0.0.1:10026",
		BackendProxyProtocol: "v1",
		DataDir:              "/var/lib/moat",
		Store:                "bolt",
		Whitelist:            pfx("192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32"),
		Blacklist:            pfx("203.0.113.0/24"),
		TrustedProxies:       pfx("10.0.0.1/32"),
		BlackTTL:             dur(48 * time.Hour),
		User:                 "moat",
		Greylist: Greylist{
			GreetDelay:  dur(3 * time.Second),
			MinRetry:    dur(2 * time.Minute),
			RetryWindow: dur(12 * time.Hour),
			WhiteTTL:    dur(30 * 24 * time.Hour),
			IPv4Prefix:  28,
			IPv6Prefix:  56,
		},
		Tarpit: Tarpit{
			Stutter:     dur(2 * time.Second),
			MaxConns:    1000,
			MaxBytes:    2048,
			MaxDuration: dur(time.Hour),
			IdleTimeout: dur(90 * time.Second),
			DataPace:    16, // the sample leaves it at its default
			FinalReply:  final,
		},
		Traps: Traps{
			Addresses:     []string{"trap@example.org", "spam@example.net"},
			Domains:       []string{"example.org", "example.net"},
			MinHosts:      5,
			Auto:          "promote",
			Follow:        []string{"/var/log/mail.log"},
			RejectPattern: `from \[(?P<client>[^]]+)\].*<(?P<addr>[^>]+)>: User unknown`,
		},
		Bait: Bait{
			Listen:         "127.0.0.1:8025",
			Domain:         "bait.example.org",
			SecretFile:     "/etc/moat/bait.key",
			Count:          5,
			TrustedProxies: pfx("127.0.0.1/32", "::1/128"),
		},
		TLS: TLS{Cert: "/etc/moat/cert.pem", Key: "/etc/moat/key.pem"},
		Limits: Limits{
			MaxConns:        2000,
			MaxConnsPerIP:   20,
			MaxRcpts:        50,
			MaxMessageSize:  1 << 20,
			MaxCommands:     200,
			MaxErrors:       5,
			IdleTimeout:     dur(4 * time.Minute),
			DataTimeout:     dur(8 * time.Minute),
			DataDoneTimeout: dur(12 * time.Minute),
			MinDataRate:     500, // the sample leaves it at its default
			BackendTimeout:  dur(3 * time.Minute),
		},
		Admin:   Admin{Socket: "/run/moat/admin.sock"},
		Metrics: Metrics{Listen: "127.0.0.1:9325", ChartStep: dur(10 * time.Second)},
		Log:     Log{Level: "debug", Format: "text", Output: "syslog"},
		Redis:   Redis{Prefix: "mx:", Timeout: dur(2 * time.Second), CacheTTL: dur(5 * time.Second), StaleTTL: dur(time.Hour)},
		// [reputation] has tests of its own; the sample leaves it at its defaults.
		Reputation: Default().Reputation,
		Bypass:     Default().Bypass,
	}
	if !reflect.DeepEqual(c, want) {
		gv, wv := reflect.ValueOf(*c), reflect.ValueOf(*want)
		for i := 0; i < gv.NumField(); i++ {
			if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
				t.Errorf("%s = %+v, want %+v", gv.Type().Field(i).Name, gv.Field(i).Interface(), wv.Field(i).Interface())
			}
		}
	}
	if got := c.AdminSocket(); got != "/run/moat/admin.sock" {
		t.Errorf("AdminSocket() = %q, want the configured socket", got)
	}
	if got := c.BaitKeyFile(); got != "/etc/moat/bait.key" {
		t.Errorf("BaitKeyFile() = %q, want the configured file", got)
	}
}

// TestParseKeepsDefaults checks that a table with one key leaves its other
// keys at their defaults.
func TestParseKeepsDefaults(t *testing.T) {
	c, err := Parse([]byte("[greylist]\nmin_retry = \"5m\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Greylist.MinRetry = dur(5 * time.Minute)
	want.Hostname = c.Hostname
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want defaults with min_retry 5m", c.Greylist)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string // all must appear in the error
	}{
		{"unknown top-level key", `greylisting = true`, []string{"unknown key", "greylisting"}},
		{"unknown nested key", "[greylist]\nfoo = 1", []string{"unknown key", "greylist.foo"}},
		{"unknown table", "[greylisting]\nmin_retry = \"1m\"", []string{"unknown key", "greylisting"}},
		{"bad duration", "[greylist]\nmin_retry = \"5x\"", []string{"greylist.min_retry", `"5x"`, "not a duration"}},
		{"bad top-level duration", `black_ttl = "soon"`, []string{"black_ttl", `"soon"`, "not a duration"}},
		{"negative duration", "[tarpit]\nstutter = \"-1s\"", []string{"tarpit.stutter", "negative"}},
		{"integer for a duration", "[greylist]\ngreet_delay = 5", []string{"greylist.greet_delay", "integer", "string"}},
		{"string for an integer", "[limits]\nmax_rcpts = \"100\"", []string{"limits.max_rcpts", "string", "integer"}},
		{"string for a list", `whitelist = "192.0.2.1"`, []string{"whitelist", "list"}},
		{"bad CIDR in whitelist", `whitelist = ["192.0.2.0/24", "192.0.2.300"]`, []string{"whitelist[1]", `"192.0.2.300"`}},
		{"bad CIDR in blacklist", `blacklist = ["203.0.113.0/33"]`, []string{"blacklist[0]", `"203.0.113.0/33"`}},
		{"bad CIDR in trusted_proxies", `trusted_proxies = ["lb.example.org"]`, []string{"trusted_proxies[0]", `"lb.example.org"`}},
		{"proxy protocol v3", `backend_proxy_protocol = "v3"`, []string{"backend_proxy_protocol", `"v3"`}},
		{"min_retry equals retry_window", "[greylist]\nmin_retry = \"1h\"\nretry_window = \"1h\"", []string{"greylist.min_retry", "greylist.retry_window"}},
		{"min_retry above retry_window", "[greylist]\nmin_retry = \"2d\"", []string{"greylist.min_retry", "greylist.retry_window"}},
		{"tls cert without key", "[tls]\ncert = \"c.pem\"", []string{"tls.cert", "tls.key"}},
		{"tls key without cert", "[tls]\nkey = \"k.pem\"", []string{"tls.cert", "tls.key"}},
		{"tarpit max_conns equals limits", "[tarpit]\nmax_conns = 100\n[limits]\nmax_conns = 100", []string{"tarpit.max_conns", "limits.max_conns"}},
		{"tarpit max_conns above limits", "[limits]\nmax_conns = 1000", []string{"tarpit.max_conns", "limits.max_conns"}},
		{"metrics listen without port", "[metrics]\nlisten = \"9325\"", []string{"metrics.listen", `"9325"`}},
		{"metrics chart_step too short", "[metrics]\nchart_step = \"100ms\"", []string{"metrics.chart_step", "100ms"}},
		{"metrics chart_step too long", "[metrics]\nchart_step = \"2h\"", []string{"metrics.chart_step"}},
		{"log level", "[log]\nlevel = \"verbose\"", []string{"log.level", `"verbose"`}},
		{"mode", `mode = "audit"`, []string{"mode", `"audit"`, "observe"}},
		{"final reply", "[tarpit.final_reply]\ndnsbl = \"drop\"", []string{"tarpit.final_reply.dnsbl", `"drop"`, "defer"}},
		{"final reply, two words", "[tarpit.final_reply]\nearly_talk = \"\"", []string{"tarpit.final_reply.early_talk", `""`}},
		{"final reply for no reason", "[tarpit.final_reply]\ngreylist = \"defer\"", []string{"unknown key", "tarpit.final_reply.greylist"}},
		{"log format", "[log]\nformat = \"xml\"", []string{"log.format", `"xml"`}},
		{"log output", "[log]\noutput = \"file\"", []string{"log.output", `"file"`, "syslog"}},
		{"user root", `user = "root"`, []string{"user", `"root"`, "unprivileged"}},
		{"listen without port", `listen = "0.0.0.0"`, []string{"listen", `"0.0.0.0"`}},
		{"backend without port", `backend = "mail.example.org"`, []string{"backend", `"mail.example.org"`}},
		{"hostname with blank", `hostname = "mx example"`, []string{"hostname"}},
		{"empty data_dir", `data_dir = ""`, []string{"data_dir"}},
		{"unknown store", `store = "mysql://db"`, []string{"store", `"mysql://db"`}},
		{"white_ttl zero", "[greylist]\nwhite_ttl = \"0s\"", []string{"greylist.white_ttl"}},
		{"greet_delay beyond banner timeout", "[greylist]\ngreet_delay = \"6m\"", []string{"greylist.greet_delay"}},
		{"ipv4_prefix", "[greylist]\nipv4_prefix = 33", []string{"greylist.ipv4_prefix", "33"}},
		{"ipv6_prefix", "[greylist]\nipv6_prefix = 8", []string{"greylist.ipv6_prefix", "8"}},
		{"black_ttl zero", `black_ttl = "0s"`, []string{"black_ttl"}},
		{"stutter too long", "[tarpit]\nstutter = \"2m\"", []string{"tarpit.stutter"}},
		{"tarpit max_bytes", "[tarpit]\nmax_bytes = 10", []string{"tarpit.max_bytes"}},
		{"tarpit data_pace", "[tarpit]\ndata_pace = 0", []string{"tarpit.data_pace", "1..4096"}},
		{"tarpit max_duration zero", "[tarpit]\nmax_duration = \"0s\"", []string{"tarpit.max_duration"}},
		{"limits zero", "[limits]\nmax_errors = 0", []string{"limits.max_errors"}},
		{"limits negative", "[limits]\nmax_conns_per_ip = -1", []string{"limits.max_conns_per_ip"}},
		{"data_timeout zero", "[limits]\ndata_timeout = \"0s\"", []string{"limits.data_timeout"}},
		{"data_done_timeout zero", "[limits]\ndata_done_timeout = \"0s\"", []string{"limits.data_done_timeout"}},
		{"trap without domain", "[traps]\naddresses = [\"trap\"]", []string{"traps.addresses[0]", `"trap"`}},
		{"TOML syntax", "listen = ", []string{"line 1"}},
		{"traps domain with @", "[traps]\ndomains = [\"@example.org\"]", []string{"traps.domains[0]", `"@example.org"`}},
		{"negative data rate", "[limits]\nmin_data_rate = -1", []string{"limits.min_data_rate", "-1", "0 for no floor"}},
		{"domain with @", "domains = [\"example.org\", \"postmaster@example.org\"]", []string{"domains[1]", `"postmaster@example.org"`, "takes mail for"}},
		{"domain with a leading dot", "domains = [\".example.org\"]", []string{"domains[0]", `".example.org"`}},
		{"traps min_hosts zero", "[traps]\nmin_hosts = 0", []string{"traps.min_hosts", "0"}},
		{"traps min_hosts too many", "[traps]\nmin_hosts = 17", []string{"traps.min_hosts", "17"}},
		{"traps auto", "[traps]\nauto = \"maybe\"", []string{"traps.auto", `"maybe"`}},
		{"traps follow empty", "[traps]\nfollow = [\"\"]", []string{"traps.follow[0]"}},
		{"traps follow not a list", "[traps]\nfollow = \"/var/log/mail.log\"", []string{"traps.follow", "list"}},
		{"traps reject_pattern syntax", "[traps]\nreject_pattern = \"(\"", []string{"traps.reject_pattern", "regular expression"}},
		{"traps reject_pattern groups", "[traps]\nreject_pattern = \"(?P<client>x) (?P<rcpt>y)\"", []string{"traps.reject_pattern", "addr"}},
		{"bait listen", "[bait]\nlisten = \"8025\"\ndomain = \"example.org\"", []string{"bait.listen", `"8025"`}},
		{"bait listen without domain", "[bait]\nlisten = \"127.0.0.1:8025\"", []string{"bait.domain", "bait.listen"}},
		{"bait domain", "[bait]\ndomain = \".example.org\"", []string{"bait.domain", `".example.org"`}},
		{"bait count zero", "[bait]\ncount = 0", []string{"bait.count", "0"}},
		{"bait count too many", "[bait]\ncount = 21", []string{"bait.count", "21"}},
		{"bait trusted_proxies", "[bait]\ntrusted_proxies = [\"proxy\"]", []string{"bait.trusted_proxies[0]", `"proxy"`}},
		{"bait unknown key", "[bait]\nport = 80", []string{"unknown key", "bait.port"}},
		{"redis prefix empty", "[redis]\nprefix = \"\"", []string{"redis.prefix"}},
		{"redis prefix glob", "[redis]\nprefix = \"moat*\"", []string{"redis.prefix", `"moat*"`}},
		{"redis timeout", "[redis]\ntimeout = \"5x\"", []string{"redis.timeout", `"5x"`, "not a duration"}},
		{"redis timeout too long", "[redis]\ntimeout = \"2m\"", []string{"redis.timeout"}},
		{"redis cache_ttl zero", "[redis]\ncache_ttl = \"0s\"", []string{"redis.cache_ttl"}},
		{"redis stale below cache", "[redis]\ncache_ttl = \"30s\"\nstale_ttl = \"10s\"", []string{"redis.stale_ttl", "redis.cache_ttl"}},
		// Settings under which nothing works are refused at load, naming the key and the fix.
		{"min_retry zero", "[greylist]\nmin_retry = \"0s\"", []string{"greylist.min_retry", `"0s"`, "must be > 0"}},
		{"min_retry integer zero", "[greylist]\nmin_retry = 0", []string{"greylist.min_retry", "integer", "string"}},
		{"retry_window shorter than min_retry", "[greylist]\nmin_retry = \"10m\"\nretry_window = \"5m\"", []string{"greylist.min_retry", "greylist.retry_window"}},
		{"negative max_duration", "[tarpit]\nmax_duration = \"-5m\"", []string{"tarpit.max_duration", "negative"}},
		{"negative message size", "[limits]\nmax_message_size = -1", []string{"limits.max_message_size"}},
		{"size not a size", "[limits]\nmax_message_size = \"lots\"", []string{"limits.max_message_size", `"lots"`, "not a size"}},
		{"size as a float", "[tarpit]\nmax_bytes = 1.5", []string{"tarpit.max_bytes", "float"}},
		{"address not a string", "whitelist = [\"192.0.2.1\", 7]", []string{"whitelist[1]", "integer", "string"}},
		{"duration as a list", "[limits]\nidle_timeout = [\"5m\"]", []string{"limits.idle_timeout", "array", "string"}},
		{"table as a number", "greylist = 5", []string{"greylist", "integer", "table"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.text))
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.text, c)
			}
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Errorf("error %q does not start with \"config: \"", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// Every problem in a file is reported at once, each on its own line with
// the file and the key, so that an operator fixes a file in one round.
func TestLoadListsEveryProblem(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		keys       []string
	}{
		{"values", "listen = \"nowhere\"\n[greylist]\nipv4_prefix = 40\n[log]\nlevel = \"loud\"\n[reputation]\ndnsbl_threshold = 0\n",
			[]string{"listen", "greylist.ipv4_prefix", "log.level", "reputation.dnsbl_threshold"}},
		{"text", "black_ttl = \"soon\"\nwhitelist = [\"192.0.2.0/24\", \"nope\"]\n[greylist]\nmin_retry = \"5x\"\n",
			[]string{"black_ttl", "whitelist[1]", "greylist.min_retry"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "moat.toml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatal("Load: no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.keys) {
				t.Fatalf("Load gave %d problems, want %d:\n%v", len(lines), len(tc.keys), err)
			}
			for _, key := range tc.keys {
				if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, path+": config: "+key+":") }) {
					t.Errorf("no line starts with the file and %s:\n%v", key, err)
				}
			}
		})
	}
}

// TestParseSizes: a size is bytes as a TOML integer, or a quoted number
// with a unit.
func TestParseSizes(t *testing.T) {
	for _, tc := range []struct {
		text string
		want Size
	}{
		{"1048576", 1 << 20},
		{"1_048_576", 1 << 20},
		{`"1048576"`, 1 << 20},
		{`"10MiB"`, 10 << 20},
		{`"10 MiB"`, 10 << 20},
		{`"64KiB"`, 64 << 10},
		{`"1GiB"`, 1 << 30},
		{`"50MB"`, 50_000_000},
		{`"2kB"`, 2000},
		{`"4096B"`, 4096},
	} {
		c, err := Parse([]byte("[limits]\nmax_message_size = " + tc.text))
		if err != nil {
			t.Errorf("max_message_size = %s: %v", tc.text, err)
			continue
		}
		if c.Limits.MaxMessageSize != tc.want {
			t.Errorf("max_message_size = %s: %d, want %d", tc.text, c.Limits.MaxMessageSize, tc.want)
		}
	}
	for _, text := range []string{`"10 lots"`, `"MiB"`, `"-1MiB"`, `"1.5MiB"`, `"9999999999GiB"`, `""`} {
		if _, err := Parse([]byte("[limits]\nmax_message_size = " + text)); err == nil || !strings.Contains(err.Error(), "limits.max_message_size") {
			t.Errorf("max_message_size = %s: err = %v, want one naming the key", text, err)
		}
	}
}

func TestParseAcceptsStores(t *testing.T) {
	for _, s := range []string{"", "bolt", "redis://127.0.0.1:6379/0", "rediss://cache.example.org:6380",
		"redis-sentinel://127.0.0.1:26379/mymaster", "redis-cluster://127.0.0.1:7000"} {
		c, err := Parse([]byte(`store = "` + s + `"`))
		if err != nil {
			t.Errorf("store %q: %v", s, err)
			continue
		}
		if c.Store != s {
			t.Errorf("store %q parsed as %q", s, c.Store)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"90s", 90 * time.Second},
		{"5m", 5 * time.Minute},
		{"24h", 24 * time.Hour},
		{"1h30m", 90 * time.Minute},
		{"36d", 864 * time.Hour},
		{"1d", 24 * time.Hour},
		{"0.5d", 12 * time.Hour},
		{" 2d ", 48 * time.Hour},
		{"0", 0},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "d", "5x", "xd", "1d2h", "5", "1hd", "five minutes"} {
		if got, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an error", in, got)
		}
	}
}

// TestParseDurationDaysOverflow: a day count too large for a Duration must
// be an error, as time.ParseDuration("3000000h") is. Today the float is
// converted to int64 out of range, which Go leaves to the platform: on
// amd64 it wraps to a negative value (so config says "must not be
// negative" for "200000d"), on arm64 it saturates and is accepted.
func TestParseDurationDaysOverflow(t *testing.T) {
	for _, in := range []string{"200000d", "1e300d"} {
		if got, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an out-of-range error", in, got)
		}
	}
}

func TestBaitKeyFile(t *testing.T) {
	tests := []struct {
		dataDir, file, want string
	}{
		{"./moat-data", "", "./moat-data/bait.key"},
		{"/var/lib/moat/", "", "/var/lib/moat/bait.key"},
		{"/var/lib/moat", "/etc/moat/bait.key", "/etc/moat/bait.key"},
	}
	for _, tt := range tests {
		c := Default()
		c.DataDir, c.Bait.SecretFile = tt.dataDir, tt.file
		if got := c.BaitKeyFile(); got != tt.want {
			t.Errorf("data_dir %q secret_file %q: BaitKeyFile() = %q, want %q", tt.dataDir, tt.file, got, tt.want)
		}
	}
}

func TestAdminSocket(t *testing.T) {
	tests := []struct {
		dataDir, socket, want string
	}{
		{"./moat-data", "", "./moat-data/moat.sock"},
		{"/var/lib/moat/", "", "/var/lib/moat/moat.sock"},
		{"/var/lib/moat", "/run/moat.sock", "/run/moat.sock"},
	}
	for _, tt := range tests {
		c := Default()
		c.DataDir, c.Admin.Socket = tt.dataDir, tt.socket
		if got := c.AdminSocket(); got != tt.want {
			t.Errorf("data_dir %q socket %q: AdminSocket() = %q, want %q", tt.dataDir, tt.socket, got, tt.want)
		}
	}
}

// TestTypeErrorHintOnlyForDurations: the hint "durations are quoted
// strings" helps when an integer is written for a duration, but today it
// is appended to every type error, so `ipv4_prefix = "24"` or a string for
// whitelist tells the operator about durations, which misleads.
func TestTypeErrorHintOnlyForDurations(t *testing.T) {
	for _, text := range []string{
		"[greylist]\nipv4_prefix = \"24\"",
		"[limits]\nmax_rcpts = \"100\"",
		`whitelist = "192.0.2.1"`,
	} {
		_, err := Parse([]byte(text))
		if err == nil {
			t.Fatalf("Parse(%q) succeeded", text)
		}
		if strings.Contains(err.Error(), "durations") {
			t.Errorf("Parse(%q): %q speaks of durations for a key that is not one", text, err)
		}
	}
}

// Diff names every key that differs, as the file spells it, and nothing
// else; a list is one key.
func TestDiff(t *testing.T) {
	a := Default()
	if d := Diff(a, Default()); len(d) != 0 {
		t.Errorf("Diff of two defaults: %v, want none", d)
	}
	b, err := Parse([]byte(`whitelist = ["192.0.2.0/24"]
listen = "127.0.0.1:25"
[greylist]
min_retry = "2m"
[log]
level = "debug"
[[reputation.follow]]
file = "/var/log/rspamd/rspamd.log"
format = "rspamd"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"listen", "whitelist", "greylist.min_retry", "log.level", "reputation.follow"}
	if d := Diff(a, b); !slices.Equal(d, want) {
		t.Errorf("Diff = %v, want %v", d, want)
	}
}

// "moat reload" finds the daemon's socket in a file that no longer loads.
func TestAdminSocketOf(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		p := filepath.Join(dir, "moat.toml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct{ text, want string }{
		{"data_dir = \"/var/lib/moat\"\n[greylist]\nmin_retry = \"5x\"\n", "/var/lib/moat/moat.sock"},
		{"data_dir = \"/var/lib/moat\"\nbogus = 1\n[admin]\nsocket = \"/run/moat/a.sock\"\n", "/run/moat/a.sock"},
		{"data_dir = 7\n", "moat-data/moat.sock"},
	} {
		if got := AdminSocketOf(write(tc.text)); got != tc.want && got != "./"+tc.want {
			t.Errorf("AdminSocketOf(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}
