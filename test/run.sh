#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing (real
# Postfix, swaks, redis-server, rspamd and chromium from Debian), then vets the
# code and runs every test under the race detector, end-to-end tests with real
# Postfix and the dashboard in a real browser included, and the Debian
# package's test (test/package.sh: build, install, check, remove). Run it as
# root (the end-to-end tests start Postfix instances; the package test
# installs a package).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v postfix >/dev/null 2>&1 || need+=(postfix)
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v rspamd >/dev/null 2>&1 || need+=(rspamd)
command -v adduser >/dev/null 2>&1 || need+=(adduser)
# The dashboard's test drives a headless Chromium.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
	echo "test/run.sh: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# "No configuration": we start our own isolated instances; the
	# system one must not start or listen on port 25.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get update
	apt-get install -y "${need[@]}"
fi

go vet ./...
go test -race -count=1 -timeout 15m ./... "$@"
./test/package.sh
