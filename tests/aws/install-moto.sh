#!/usr/bin/env bash
# Install moto's server mode into a venv under target/, for the tests of postern reconcile.
#
# Creates the venv if it is missing and installs tests/aws/requirements.txt into it. The tests
# start `moto_server` from this venv on a loopback port of their own.
#
# Environment:
#   MOTO_VENV    venv folder (default: target/moto-venv, inside the git-ignored build folder)
#   MOTO_PYTHON  interpreter that creates the venv (default: python3.11, else python3)
set -euo pipefail

REPO_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
MOTO_VENV=${MOTO_VENV:-$REPO_DIR/target/moto-venv}

if [ -z "${MOTO_PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null; then
        MOTO_PYTHON=python3.11
    else
        MOTO_PYTHON=python3
    fi
fi

if [ ! -x "$MOTO_VENV/bin/python" ]; then
    echo "install-moto.sh: creating the venv $MOTO_VENV with $MOTO_PYTHON" >&2
    "$MOTO_PYTHON" -m venv "$MOTO_VENV"
fi
"$MOTO_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$REPO_DIR/tests/aws/requirements.txt"
echo "install-moto.sh: $MOTO_VENV/bin/moto_server is ready"
