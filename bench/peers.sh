#!/bin/bash
# Grey path, side by side: sessions/s of EHLO / MAIL / RCPT (deferred) /
# QUIT from distinct source addresses, against
#   1. moat (greet_delay 0s, bolt store on, one JSON log line per session),
#   2. Postfix smtp-sink (a server that does nothing: the ceiling),
#   3. Postfix postscreen in front of smtpd, with a check_policy_service to
#      postgrey (a separate Postfix instance; no DNSBL, no greet wait test).
# All three get the same load from the same load tool, one after another,
# and each figure is printed as a ratio against the others. Run as root.
#
#	bench/peers.sh            C=32 workers, D=20s per server
#	C=64 D=30s bench/peers.sh
. "$(dirname "$0")/lib.sh"
C=${C:-32}
D=${D:-20s}
machine
if ! command -v postscreen >/dev/null && [ ! -x "$(postconf -dh daemon_directory 2>/dev/null)/postscreen" ] || ! command -v smtp-sink >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >/dev/null
fi
if ! command -v postgrey >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y postgrey >/dev/null
fi
build
echo "postfix $(postconf -dh mail_version), postgrey $(postgrey --version 2>&1 | head -1)"
echo "load: C=$C concurrent sessions, D=$D measured per server, one new source address per session from 127.16.0.0/12"
echo

MOAT_ADDR=127.0.0.1:10040
SINK_ADDR=127.0.0.1:10041
PS_ADDR=127.0.0.1:10042
PG_ADDR=127.0.0.1:10043

# --- moat ---------------------------------------------------------------
mkdir -p "$WORK/moat-data"
cat >"$WORK/moat.toml" <<CONF
listen = "$MOAT_ADDR"
hostname = "mx.bench.example"
backend = "$SINK_ADDR"
data_dir = "$WORK/moat-data"
[greylist]
greet_delay = "0s"
[log]
level = "info"
# Loopback only: no SPF lookups for the pools, and a name server on
# loopback where nothing listens, so that nothing can reach a real one.
[reputation]
spf_pools = false
dns_servers = ["127.0.0.1:9"]
CONF

# --- postgrey ------------------------------------------------------------
mkdir -p "$WORK/postgrey"
chown postgrey:postgrey "$WORK/postgrey"

# --- postscreen + smtpd: a Postfix instance of its own ------------------
PF=$WORK/pf
mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
chown postfix:postfix "$PF/data"
chmod 700 "$PF/data"
for q in active bounce corrupt defer deferred flush hold incoming private saved trace; do
	install -d -o postfix -g root -m 700 "$PF/spool/$q"
done
install -d -o postfix -g postdrop -m 730 "$PF/spool/maildrop"
install -d -o postfix -g postdrop -m 710 "$PF/spool/public"
install -d -o root -g root -m 755 "$PF/spool/pid"
cat >"$PF/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
myhostname = pf.bench.example
mydomain = bench.example
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
biff = no
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_policy_service inet:$PG_ADDR, permit
# No DNSBL, and the pregreet test ignored: postscreen only accepts, checks
# its cache and hands the connection to smtpd, as moat with greet_delay 0s
# only accepts, classifies and answers.
postscreen_dnsbl_sites =
postscreen_greet_action = ignore
postscreen_greet_wait = \${POSTSCREEN_GREET_WAIT:-1s}
postscreen_cache_map = btree:\$data_directory/postscreen_cache
CONF
sed -i "s/\${POSTSCREEN_GREET_WAIT:-1s}/${POSTSCREEN_GREET_WAIT:-1s}/" "$PF/etc/main.cf"
cat >"$PF/etc/master.cf" <<CONF
# service type  private unpriv  chroot  wakeup  maxproc command
$PS_ADDR inet n - n - 1 postscreen
smtpd     pass  -       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
dnsblog   unix  -       -       n       -       0       dnsblog
tlsproxy  unix  -       -       n       -       0       tlsproxy
CONF
postconf -c "$PF/etc" -F '*/*/chroot = n' >/dev/null

# Each server runs alone: started, measured, stopped, so that none pays
# for another's background work. The load tool and the server share the
# two cores, the same way for all three.
stop() { # pid...
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	for p in "$@"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
}
run() { # name addr [pid]
	# Throughput at C workers, then latency with one session at a time
	# (no queueing), from fresh source addresses each time.
	"$LOAD" grey -name "$1" -addr "$2" -c "$C" -d "$D" -src 127.16.0.0/12 ${3:+-pid $3} | tee -a "$WORK/results"
	"$LOAD" grey -name "$1-c1" -addr "$2" -c 1 -d 5s -src 127.32.0.0/12 | tee -a "$WORK/results"
}

"$MOAT" -c "$WORK/moat.toml" run 2>"$WORK/moat.log" &
MOAT_PID=$!
started $MOAT_PID
wait_port "$MOAT_ADDR"
sleep 1
run moat "$MOAT_ADDR" $MOAT_PID
"$MOAT" -c "$WORK/moat.toml" status | grep -E 'hosts|sessions' || true
stop $MOAT_PID

smtp-sink -u nobody -c "$SINK_ADDR" 1000 >/dev/null 2>&1 &
SINK_PID=$!
started $SINK_PID
wait_port "$SINK_ADDR"
sleep 1
run smtp-sink "$SINK_ADDR" $SINK_PID
stop $SINK_PID

# Postfix's work is spread over postscreen, many smtpd processes and
# postgrey: the load tool reports no server CPU for this pair.
postgrey --inet="$PG_ADDR" --delay=60 --dbdir="$WORK/postgrey" --user=postgrey --group=postgrey \
	--pidfile="$WORK/postgrey/pid" >"$WORK/postgrey.log" 2>&1 &
PG_PID=$!
started $PG_PID
"$(postconf -dh daemon_directory)/master" -c "$PF/etc" -d >"$WORK/master.log" 2>&1 &
PF_PID=$!
started $PF_PID
wait_port "$PG_ADDR"
wait_port "$PS_ADDR"
sleep 1
run postscreen+postgrey "$PS_ADDR"
stop $PF_PID $PG_PID

echo
awk '/^RESULT/ { for (i = 3; i <= NF; i++) { split($i, kv, "="); v[$2, kv[1]] = kv[2] } }
END {
	m = "moat"; s = "smtp-sink"; p = "postscreen+postgrey"
	printf "sessions/s          moat %.0f, smtp-sink %.0f, postscreen+postgrey %.0f\n", v[m, "rate"], v[s, "rate"], v[p, "rate"]
	printf "moat / smtp-sink            %.2fx sessions/s  (target >= 0.5x)\n", v[m, "rate"] / v[s, "rate"]
	printf "moat / postscreen+postgrey  %.2fx sessions/s  (target >= 2x)\n", v[m, "rate"] / v[p, "rate"]
	printf "CPU per session (µs): moat %s, smtp-sink %s, postscreen+postgrey %s; smtp-sink/moat %.2fx, postscreen+postgrey/moat %.2fx\n",
		v[m, "us_per_session"], v[s, "us_per_session"], v[p, "us_per_session"],
		v[s, "us_per_session"] / v[m, "us_per_session"], v[p, "us_per_session"] / v[m, "us_per_session"]
	printf "latency at C='"$C"'   p50/p99 ms: moat %s/%s, smtp-sink %s/%s, postscreen+postgrey %s/%s\n",
		v[m, "p50_ms"], v[m, "p99_ms"], v[s, "p50_ms"], v[s, "p99_ms"], v[p, "p50_ms"], v[p, "p99_ms"]
	printf "latency at C=1    p50/p99 ms: moat %s/%s, smtp-sink %s/%s, postscreen+postgrey %s/%s\n",
		v[m "-c1", "p50_ms"], v[m "-c1", "p99_ms"], v[s "-c1", "p50_ms"], v[s "-c1", "p99_ms"], v[p "-c1", "p50_ms"], v[p "-c1", "p99_ms"]
	printf "p50 at C=1: moat / smtp-sink %.2fx, moat / postscreen+postgrey %.2fx\n",
		v[m "-c1", "p50_ms"] / v[s "-c1", "p50_ms"], v[m "-c1", "p50_ms"] / v[p "-c1", "p50_ms"]
}' "$WORK/results"
echo
echo "postscreen log lines: $(grep -c 'postscreen' "$PF/maillog" || true), postgrey deferrals: $(grep -c 'Greylisted' "$PF/maillog" || true)"
grep -E 'warning|fatal|error' "$PF/maillog" | grep -v master_sigdeath | head -3 || true
