# Shared set-up for the bench/*.sh scripts; sourced, not run.
#
# It builds moat and the load tool into a scratch directory, prints the
# machine the figures come from, and stops on exit every process the
# script started (by its pid, nothing else).

set -eu
cd "$(dirname "$0")/.."

# The scratch directory must be searchable by Postfix's unprivileged
# daemons (peers.sh), so it lives under /tmp, not a private TMPDIR.
WORK=$(mktemp -d /tmp/moat-bench-XXXXXX)
chmod 755 "$WORK"
PIDS=""

cleanup() {
	for p in $PIDS; do
		kill "$p" 2>/dev/null || true
	done
	for p in $PIDS; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.2
		done
		kill -9 "$p" 2>/dev/null || true
	done
	if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT INT TERM

# started PID: remember a process to stop at exit.
started() { PIDS="$PIDS $1"; }

machine() {
	echo "== machine =="
	echo "nproc: $(nproc)"
	free -h | sed -n 2p
	echo "kernel: $(uname -sr)"
	go version
	echo "ulimit -n: $(ulimit -n)"
	# The machine may be shared: a busy start explains a noisy figure.
	echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
	echo
}

# build: moat and the load tool from this tree. MOAT_BIN=path runs another
# moat binary instead (an A/B comparison of a change).
build() {
	if [ -n "${MOAT_BIN:-}" ]; then
		MOAT=$MOAT_BIN
	else
		go build -o "$WORK/moat" ./cmd/moat
		MOAT="$WORK/moat"
	fi
	go build -o "$WORK/load" ./bench/load
	LOAD="$WORK/load"
}

# wait_port HOST:PORT: wait until something accepts there (30s at most).
wait_port() {
	for _ in $(seq 300); do
		if (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "nothing accepts on $1 after 30s" >&2
	return 1
}

# need_postfix: smtp-sink and smtp-source come with Debian's postfix.
need_postfix() {
	if ! command -v smtp-sink >/dev/null || ! command -v smtp-source >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >/dev/null
	fi
}

# sink ADDR: start smtp-sink there (it needs -u as root).
sink() {
	smtp-sink -u nobody -c "$1" 1000 >/dev/null 2>&1 &
	started $!
	wait_port "$1"
}

# smtp_secs ARGS...: how many seconds one smtp-source run took.
smtp_secs() {
	local t0 t1
	t0=$(date +%s.%N)
	smtp-source "$@" >/dev/null
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

# cpu_ticks PID: the process's utime+stime in clock ticks (1/100 s).
cpu_ticks() {
	awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# median: the median of the numbers on standard input, one a line.
median() {
	sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}
