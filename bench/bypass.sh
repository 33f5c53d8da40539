#!/bin/bash
# Kernel bypass: smtp-source -> moat's port, redirected by moat's nftables
# rule to smtp-sink (the "bypass listener"), against smtp-source -> smtp-sink
# directly, alternating, in one run; and moat's CPU while white hosts send
# (none should be spent on them: the kernel sends them past moat). Loopback
# clients meet the rule on the output hook. Needs root and nf_tables.
#
#	bench/bypass.sh            M=20000 messages, S=20 sessions, 9 rounds
. "$(dirname "$0")/lib.sh"
M=${M:-20000}
S=${S:-20}
ROUNDS=${ROUNDS:-9}
TABLE=moatbench$$
machine
need_postfix
build
SINK=127.0.0.1:10061
LISTEN=127.0.0.1:10060
sink "$SINK"
mkdir -p "$WORK/data"
# Every loopback source is white (the configuration's whitelist), so every
# connection to moat's port is redirected to the sink.
cat >"$WORK/moat.toml" <<CONF
listen = "$LISTEN"
hostname = "mx.bench.example"
backend = "$SINK"
backend_proxy_protocol = "none"
data_dir = "$WORK/data"
whitelist = ["127.0.0.0/8"]
[bypass]
mode = "nftables"
port = ${SINK##*:}
table = "$TABLE"
[log]
level = "info"
[reputation]
spf_pools = false
dns_servers = ["127.0.0.1:9"]
CONF
"$MOAT" -c "$WORK/moat.toml" run 2>"$WORK/moat.log" &
MPID=$!
started $MPID
# moat leaves its table in the kernel when it stops (white hosts keep
# flowing); the benchmark's own table goes when the script ends.
trap 'cleanup; nft delete table inet "$TABLE" 2>/dev/null || true' EXIT INT TERM
wait_port "$LISTEN"
sleep 1
"$MOAT" -c "$WORK/moat.toml" status | grep 'kernel bypass'

rate() { echo "$M / $1" | bc -l; }
ratio_rounds() { # label smtp-source-args...
	local label=$1
	shift
	local direct via c0 c1
	for r in $(seq "$ROUNDS"); do
		# Which path goes first alternates, so that a machine getting
		# busier or quieter during a round favours neither.
		if [ $((r % 2)) = 0 ]; then direct=$(smtp_secs "$@" "$SINK"); fi
		c0=$(cpu_ticks $MPID)
		via=$(smtp_secs "$@" "$LISTEN")
		c1=$(cpu_ticks $MPID)
		if [ $((r % 2)) = 1 ]; then direct=$(smtp_secs "$@" "$SINK"); fi
		printf '%-20s round %d: direct %5.0f msg/s, through moat'"'"'s port (bypassed) %5.0f; moat CPU %d ticks (1/100 s) during it; bypass/direct %.3f\n' \
			"$label" "$r" "$(rate "$direct")" "$(rate "$via")" "$((c1 - c0))" "$(echo "$direct / $via" | bc -l)" | tee -a "$WORK/rounds"
	done
}
echo "== smtp-source -s $S -m $M: one message per connection, 1 KiB =="
ratio_rounds "1 msg/conn, 1 KiB" -s "$S" -m "$M" -l 1024
echo "== smtp-source -d -s $S -m $M: messages over kept connections, 100 KiB =="
ratio_rounds "kept conns, 100 KiB" -d -s "$S" -m "$M" -l 102400
echo
for label in "1 msg/conn, 1 KiB" "kept conns, 100 KiB"; do
	printf '%-20s median bypass/direct %.3f (target >= 0.97)\n' "$label" \
		"$(grep -F "$label" "$WORK/rounds" | sed 's/.*bypass\/direct \([0-9.]*\)$/\1/' | median)"
done
echo
echo "== added connection latency (time to banner, 2000 connections each, alternating) =="
"$LOAD" banner -addr "$LISTEN" -ref "$SINK" -src 127.0.0.1 -n 2000
echo
c0=$(cpu_ticks $MPID)
sleep 10
c1=$(cpu_ticks $MPID)
echo "moat idle, nobody sending, for comparison: $((c1 - c0)) ticks in 10 s (timers, store flushes)"
echo "moat sessions during the whole run (white hosts should never reach it):"
"$MOAT" -c "$WORK/moat.toml" status | grep -E 'sessions|connections now' || echo "(no sessions since start)"
