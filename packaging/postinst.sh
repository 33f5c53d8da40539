#!/bin/sh
# moat's postinst: the system user moat runs as, its state directory, and
# the configuration readable by it. moat is not started: it takes port 25,
# and the mail server must move to its loopback port first (see
# /usr/share/doc/moat/postfix.md).
set -e
if [ "$1" = configure ]; then
	mkdir -p /var/lib/moat
	if ! getent passwd moat >/dev/null; then
		adduser --system --group --home /var/lib/moat --no-create-home \
			--gecos "moat SMTP border proxy" moat
	fi
	install -d -o moat -g moat -m 0750 /var/lib/moat
	# As shipped (root:root), the configuration is given to the group
	# moat: a reload, run as moat, reads it again. An operator's own
	# ownership is left alone.
	if [ "$(stat -c %U:%G /etc/moat/moat.toml)" = root:root ]; then
		chgrp moat /etc/moat/moat.toml
		chmod 0640 /etc/moat/moat.toml
	fi
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
fi
exit 0
