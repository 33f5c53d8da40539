#!/bin/sh
# moat's postrm: removing the package leaves moat's state alone (what it
# learnt, the operator's entries, the bait key); purging it removes them.
# The user stays, as Debian does for system users: files elsewhere may
# still belong to it.
set -e
if [ "$1" = purge ]; then
	rm -rf /var/lib/moat
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
