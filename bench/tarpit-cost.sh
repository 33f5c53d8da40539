#!/bin/bash
# What the tarpit costs a bot per message, on a real socket: a patient bot
# sends one message of SIZE bytes to a moat that holds it as black, waits
# for every stuttered reply, and the load tool reports the time the session
# took, the reply bytes and how long the body took to go out. moat evaluate
# charges the same from the tarpit's words (tarpit.Replay); this checks it
# on the wire.
#
#	bench/tarpit-cost.sh [SIZE] [STUTTER]     default 3000 bytes, "1s"
#
# At the default stutter a session takes minutes; STUTTER=100ms gives the
# same bytes ten times faster (the time scales with the stutter).
. "$(dirname "$0")/lib.sh"
SIZE=${1:-3000}
STUTTER=${2:-1s}
machine
build

LISTEN=127.0.0.1:10040
mkdir -p "$WORK/data"
cat >"$WORK/moat.toml" <<CONF
listen = "$LISTEN"
hostname = "mx.bench.example"
backend = "127.0.0.1:9"
backend_proxy_protocol = "none"
data_dir = "$WORK/data"
blacklist = ["127.64.0.0/10"]
[tarpit]
stutter = "$STUTTER"
max_duration = "2h"
# The bot is black by the configuration's list; told "queued" like a proven
# bot (a trap hit), which is the session the figure is for.
[tarpit.final_reply]
operator = "accept"
[reputation]
spf_pools = false
dns_servers = ["127.0.0.1:9"]
CONF
"$MOAT" -c "$WORK/moat.toml" run 2>"$WORK/moat.log" &
started $!
wait_port "$LISTEN"
echo "== tarpit cost: one message of $SIZE bytes, stutter $STUTTER =="
"$LOAD" cost -addr "$LISTEN" -src 127.64.0.1 -size "$SIZE"
