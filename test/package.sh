#!/usr/bin/env bash
# The Debian package, tested as an operator meets it: build moat and the
# .deb (nfpm, packaging/nfpm.yaml), install it with dpkg, check that the
# user, the units and the configuration are in place and that "moat check"
# passes on the shipped configuration, run moat on the packaged data_dir as
# root (it drops to the user moat), then remove the package and check that
# moat's state is still there. Purges and removes what it installed at the
# end. Run as root on a machine where no moat package is installed (CI);
# test/run.sh calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ "$(id -u)" != 0 ]; then
	echo "test/package.sh: run it as root: it installs a package" >&2
	exit 1
fi
# One package test at a time on a machine, whoever runs it.
exec 9>/tmp/moat-package.lock
flock 9
if dpkg-query -W -f '${Status}' moat 2>/dev/null | grep -q 'ok installed'; then
	echo "test/package.sh: a moat package is installed here already; the test will not touch it" >&2
	exit 1
fi
had_user=no
getent passwd moat >/dev/null && had_user=yes

work=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	dpkg --purge moat >/dev/null 2>&1 || true
	if [ "$had_user" = no ] && getent passwd moat >/dev/null; then
		deluser --system moat >/dev/null 2>&1 || true
		delgroup --system moat >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "test/package.sh: FAIL: $*" >&2
	[ -f "$work/moat.log" ] && tail -20 "$work/moat.log" >&2
	exit 1
}

version=0.0.0
if rev=$(git rev-parse --short=12 HEAD 2>/dev/null); then
	version="0.0.0+git.$rev"
fi
# A static binary: the package does not depend on the C library's version.
CGO_ENABLED=0 go build -buildvcs=true -trimpath -o "$work/moat" ./cmd/moat 2>/dev/null ||
	CGO_ENABLED=0 go build -trimpath -o "$work/moat" ./cmd/moat
(cd packaging && MOAT_BINARY="$work/moat" MOAT_VERSION="$version" MOAT_ARCH="$(dpkg --print-architecture)" \
	go tool nfpm package --config nfpm.yaml --packager deb --target "$work/")
deb=$(ls "$work"/moat_*.deb)
echo "test/package.sh: built $(basename "$deb")"

dpkg -i "$deb" >/dev/null || fail "dpkg -i"
getent passwd moat >/dev/null || fail "no user moat after install"
[ "$(stat -c %U:%G:%a /var/lib/moat)" = moat:moat:750 ] || fail "/var/lib/moat is $(stat -c %U:%G:%a /var/lib/moat)"
[ "$(stat -c %U:%G:%a /etc/moat/moat.toml)" = root:moat:640 ] || fail "/etc/moat/moat.toml is $(stat -c %U:%G:%a /etc/moat/moat.toml)"
for f in /usr/bin/moat /usr/lib/systemd/system/moat.service /usr/lib/systemd/system/moat.socket /usr/share/doc/moat/postfix.md; do
	[ -e "$f" ] || fail "$f not installed"
done
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify /usr/lib/systemd/system/moat.socket /usr/lib/systemd/system/moat.service ||
		fail "systemd-analyze verify of the units"
fi
/usr/bin/moat version
/usr/bin/moat check -c /etc/moat/moat.toml || fail "moat check -c /etc/moat/moat.toml"
# Without -c, the system's file is read, and said so.
out=$(cd / && /usr/bin/moat check 2>&1) || fail "moat check without -c: $out"
case $out in
*"reading /etc/moat/moat.toml"*) ;;
*) fail "moat without -c does not say it reads /etc/moat/moat.toml: $out" ;;
esac

# moat on the packaged data_dir, on a loopback port, started as root as an
# init without socket activation would: it drops to moat.
port=
for p in $(seq 20025 20125); do
	# A port nothing answers on (bash's /dev/tcp connects, or fails).
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		port=$p
		break
	fi
done
[ -n "$port" ] || fail "no free port on 127.0.0.1 in 20025..20125"
sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" /etc/moat/moat.toml >"$work/moat.toml"
/usr/bin/moat run -c "$work/moat.toml" >"$work/moat.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	[ -S /var/lib/moat/moat.sock ] && break
	sleep 0.1
done
/usr/bin/moat -c "$work/moat.toml" hosts black 192.0.2.1 || fail "moat hosts black through the daemon"
[ "$(stat -c %U /proc/$pid)" = moat ] || fail "moat runs as $(stat -c %U /proc/$pid), want moat"
kill -TERM "$pid"
wait "$pid" || fail "moat exited with $? after SIGTERM"
pid=
[ "$(stat -c %U /var/lib/moat/moat.db)" = moat ] || fail "the store belongs to $(stat -c %U /var/lib/moat/moat.db)"

dpkg -r moat >/dev/null || fail "dpkg -r"
[ ! -e /usr/bin/moat ] || fail "/usr/bin/moat left after dpkg -r"
[ -s /var/lib/moat/moat.db ] || fail "dpkg -r removed moat's store"
[ -e /etc/moat/moat.toml ] || fail "dpkg -r removed the configuration"
list=$("$work/moat" -c "$work/moat.toml" hosts list) || fail "moat hosts list after dpkg -r"
case $list in
*192.0.2.1*) ;;
*) fail "the store after dpkg -r lost the operator's entry: $list" ;;
esac
echo "test/package.sh: ok: installed, checked, ran as moat, removed with its state kept"
