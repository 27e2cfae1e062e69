#!/usr/bin/env bash
# Install redis-server for the server-side session tests, with apt-get when
# it is missing and this runs as root. The tests start their own server on
# a free loopback port and stop it at the end.
set -euo pipefail

if command -v redis-server >/dev/null; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq redis-server >/dev/null
    # The package may start a system-wide server; the tests need none.
    if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
        systemctl stop redis-server || true
    fi
else
    echo "error: redis-server is needed for the session tests; install the Debian package redis-server" >&2
    exit 1
fi
