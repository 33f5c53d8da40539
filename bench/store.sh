#!/bin/bash
# Store: decisions/s on the hot path and persistence rate (Go benchmarks
# over the real engine and bolt store holding a million triplets), the
# bolt package's own benchmarks (memory per entry, open time), and one
# whole-process figure: moat started on a data_dir holding a million
# triplets, time until it accepts connections, and its RSS.
#
#	bench/store.sh
. "$(dirname "$0")/lib.sh"
machine
build

echo "== hot path: go test -run '^\$' -bench . -benchtime 1000000x -count 3 ./bench/hotpath =="
go test -run '^$' -bench . -benchtime 1000000x -count 3 ./bench/hotpath | grep -E '^Benchmark'
echo
echo "== bolt store, per operation: go test -run '^\$' -bench 'Lookup|TripletGet|PutTripletSustained' -benchtime 1000000x ./internal/store/bolt =="
go test -run '^$' -bench 'Lookup|TripletGet|PutTripletSustained' -benchtime 1000000x ./internal/store/bolt | grep -E '^Benchmark'
echo "== bolt store, per store: go test -run '^\$' -bench 'TripletMemory|Open1M' -benchtime 3x ./internal/store/bolt =="
go test -run '^$' -bench 'TripletMemory|Open1M' -benchtime 3x ./internal/store/bolt | grep -E '^Benchmark'
echo

echo "== whole process: 1,000,000 triplets through the store's API, then moat started on them =="
mkdir -p "$WORK/empty" "$WORK/full"
"$LOAD" fill -db "$WORK/full/moat.db" -n 1000000 | tail -1
for d in empty full; do
	cat >"$WORK/$d.toml" <<CONF
listen = "127.0.0.1:10090"
hostname = "mx.bench.example"
data_dir = "$WORK/$d"
[log]
level = "warn"
[reputation]
spf_pools = false
dns_servers = ["127.0.0.1:9"]
CONF
	echo "-- data_dir $d --"
	"$LOAD" startup -addr 127.0.0.1:10090 -- "$MOAT" -c "$WORK/$d.toml" run | tee -a "$WORK/startup"
done
awk '/^RESULT startup/ { for (i = 3; i <= NF; i++) { split($i, kv, "="); v[NR, kv[1]] = kv[2] }; n[++k] = NR }
END {
	e = n[1]; f = n[2]
	printf "per entry above the empty process: VmRSS %.0f B, RssAnon %.0f B (target <= 200 B), RssFile %.0f B\n",
		(v[f, "rss_kb"] - v[e, "rss_kb"]) * 1024 / 1e6, (v[f, "anon_kb"] - v[e, "anon_kb"]) * 1024 / 1e6, (v[f, "file_kb"] - v[e, "file_kb"]) * 1024 / 1e6
	printf "start-up with 1M triplets: %d ms (target <= 2000 ms: %.2fx)\n", v[f, "ms"], v[f, "ms"] / 2000
}' "$WORK/startup"
