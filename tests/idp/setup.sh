#!/usr/bin/env bash
# Install the test identity provider (npm oidc-provider) and the browser
# driver (npm playwright-core), both pinned in package-lock.json, into
# tests/idp/node_modules. Installs Node.js, npm and Chromium with apt-get
# first when they are missing and this runs as root.
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "error: node and npm are needed for the identity provider tests; install Node.js 20 or later" >&2
        exit 1
    fi
fi

if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        apt-get install -y -qq chromium >/dev/null
    else
        echo "error: chromium is needed for the browser sign-in tests; install the Debian package chromium" >&2
        exit 1
    fi
fi

# npm ci is skipped when node_modules matches the lock file already.
if ! cmp -s package-lock.json node_modules/.package-lock.json 2>/dev/null; then
    npm ci --no-audit --no-fund --loglevel=error
fi
