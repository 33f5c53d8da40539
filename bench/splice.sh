#!/bin/bash
# White splice: smtp-source -> moat -> smtp-sink against smtp-source ->
# smtp-sink directly, alternating, in one run; the connection latency moat
# adds (time to banner, measured by the load tool); and a short strace
# showing that the bytes go through splice(2). A third path, the smallest
# Go proxy ("load proxy": accept, dial, io.Copy both ways), separates the
# cost of any extra hop on this machine from the cost of moat's own logic.
# Run as root.
#
#	bench/splice.sh            M=20000 messages, S=20 sessions, 3 rounds
. "$(dirname "$0")/lib.sh"
M=${M:-20000}
S=${S:-20}
ROUNDS=${ROUNDS:-3}
machine
need_postfix
build
SINK=127.0.0.1:10051
LISTEN=127.0.0.1:10050
PROXY=127.0.0.1:10052
sink "$SINK"
"$LOAD" proxy -listen "$PROXY" -backend "$SINK" &
started $!
wait_port "$PROXY"
mkdir -p "$WORK/data"
# smtp-sink does not speak the PROXY protocol: backend_proxy_protocol is
# "none" here (production default "v2"; the header is one more write of
# 28 bytes on the backend connection, before the splice starts).
cat >"$WORK/moat.toml" <<CONF
listen = "$LISTEN"
hostname = "mx.bench.example"
backend = "$SINK"
backend_proxy_protocol = "none"
data_dir = "$WORK/data"
whitelist = ["127.0.0.0/8"]
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

rate() { echo "$M / $1" | bc -l; }
ratio_rounds() { # label smtp-source-args...
	local label=$1
	shift
	local direct proxy via c0 c1
	for r in $(seq "$ROUNDS"); do
		direct=$(smtp_secs "$@" "$SINK")
		proxy=$(smtp_secs "$@" "$PROXY")
		c0=$(cpu_ticks $MPID)
		via=$(smtp_secs "$@" "$LISTEN")
		c1=$(cpu_ticks $MPID)
		printf '%-20s round %d: direct %5.0f msg/s, bare Go proxy %5.0f, moat %5.0f (moat CPU %3.0f µs/msg); moat/direct %.3f, moat/proxy %.3f\n' \
			"$label" "$r" "$(rate "$direct")" "$(rate "$proxy")" "$(rate "$via")" "$(echo "($c1 - $c0) * 10000 / $M" | bc -l)" \
			"$(echo "$direct / $via" | bc -l)" "$(echo "$proxy / $via" | bc -l)" | tee -a "$WORK/rounds"
	done
}
echo "== smtp-source -s $S -m $M: one message per connection, 1 KiB =="
ratio_rounds "1 msg/conn, 1 KiB" -s "$S" -m "$M" -l 1024
echo "== smtp-source -d -s $S -m $M: messages over kept connections, 100 KiB =="
ratio_rounds "kept conns, 100 KiB" -d -s "$S" -m "$M" -l 102400
echo
for label in "1 msg/conn, 1 KiB" "kept conns, 100 KiB"; do
	rows=$(grep -F "$label" "$WORK/rounds")
	printf '%-20s median moat/direct %.3f (target >= 0.95), moat/bare proxy %.3f\n' "$label" \
		"$(echo "$rows" | sed 's/.*moat\/direct \([0-9.]*\),.*/\1/' | median)" \
		"$(echo "$rows" | sed 's/.*moat\/proxy \([0-9.]*\)$/\1/' | median)"
done
echo
echo "== added connection latency (time to banner, 2000 connections each, alternating) =="
"$LOAD" banner -addr "$LISTEN" -ref "$SINK" -src 127.0.0.1 -n 2000
echo "-- the same for the bare Go proxy: the floor of one more hop on this machine --"
"$LOAD" banner -addr "$PROXY" -ref "$SINK" -src 127.0.0.1 -n 2000
echo
echo "== splice(2) in use: strace -f -e trace=splice on moat for one smtp-source run of 200 messages =="
strace -f -qq -e trace=splice -p $MPID -o "$WORK/strace.out" &
SPID=$!
sleep 1
smtp-source -s 4 -m 200 -l 10240 "$LISTEN" >/dev/null
sleep 0.5
kill $SPID 2>/dev/null
wait $SPID 2>/dev/null || true
echo "splice calls: $(grep -c 'splice(' "$WORK/strace.out" || true)"
grep -m2 'splice(' "$WORK/strace.out" || true
