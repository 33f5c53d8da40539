#!/bin/bash
# Tarpit capacity: moat holds N black connections stuttering at 1 byte/s.
# Prints moat's RSS per held connection, its CPU, the gaps between bytes on
# a sample of connections, and what happens at the cap: extra black
# connections closed at once while grey and white hosts still get their
# banner. Run as root (smtp-sink, the white backend, wants -u nobody).
#
#	bench/tarpit.sh [N]     default N=19000
#	DATA=8192 bench/tarpit.sh [N]
#	                        every bot sends a message of 8 KiB instead of
#	                        NOOPs, and the measuring waits 300 s for the
#	                        replies before DATA, so that in the window the
#	                        tarpit reads messages (tarpit.data_pace a
#	                        stutter) instead of stuttering replies: the
#	                        byte gaps are then the sampled bots' silence
. "$(dirname "$0")/lib.sh"
N=${1:-19000}
# With DATA, the replies before the message take about four minutes at 1s.
DEFAULT_SETTLE=10s
[ -n "${DATA:-}" ] && DEFAULT_SETTLE=300s
machine
need_postfix
build

BACKEND=127.0.0.1:10031
LISTEN=127.0.0.1:10030
sink "$BACKEND"
mkdir -p "$WORK/data"
# Black: 127.64.0.0/10 (the load tool's sources). Grey: 127.0.0.2.
# White: 127.255.0.0/16, spliced to smtp-sink (no PROXY header: smtp-sink
# does not speak it). The tarpit cap is N+100, so the load tool's extra
# connections fill it and the rest are refused.
cat >"$WORK/moat.toml" <<CONF
listen = "$LISTEN"
hostname = "mx.bench.example"
backend = "$BACKEND"
backend_proxy_protocol = "none"
data_dir = "$WORK/data"
blacklist = ["127.64.0.0/10"]
whitelist = ["127.255.0.0/16"]
[greylist]
greet_delay = "0s"
[tarpit]
stutter = "1s"
max_conns = $((N + 100))
max_duration = "2h"
[limits]
max_conns = 19800
max_conns_per_ip = 50
[log]
level = "info"
# Loopback only: no SPF lookups for the pools, and a name server on
# loopback where nothing listens, so that nothing can reach a real one.
[reputation]
spf_pools = false
dns_servers = ["127.0.0.1:9"]
CONF
"$MOAT" -c "$WORK/moat.toml" run 2>"$WORK/moat.log" &
MPID=$!
started $MPID
wait_port "$LISTEN"
sleep 1

# PERF=FILE: record a CPU profile of moat (kernel and user) for 20s while
# everything is held; read it with "perf report -i FILE".
if [ -n "${PERF:-}" ]; then
	(sleep 20; perf record -F 499 -g -o "$PERF" -p $MPID -- sleep 20 >/dev/null 2>&1) &
fi
"$LOAD" tarpit -addr "$LISTEN" -n "$N" -per-ip 10 -src 127.64.0.0/10 -pid $MPID \
	-admin "$WORK/data/moat.sock" ${DATA:+-data "$DATA"} -extra 300 -grey-src 127.0.0.2 -white-src 127.255.0.1 \
	-settle "${SETTLE:-$DEFAULT_SETTLE}" -window "${WINDOW:-60s}"
echo
echo "== moat's log at the cap =="
grep -m1 'tarpit full' "$WORK/moat.log" || echo "(no 'tarpit full' line)"
echo "== moat status =="
"$MOAT" -c "$WORK/moat.toml" status || true
