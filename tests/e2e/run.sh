#!/usr/bin/env bash
# Run the end-to-end tests, in which the openai client reaches a real LiteLLM proxy through postern.
#
# Creates a Python venv if it is missing, installs tests/e2e/requirements.txt
# into it, and runs pytest on tests/e2e. Extra arguments go to pytest. The
# exit code is pytest's.
#
# Environment:
#   E2E_VENV      venv folder (default: target/e2e-venv, inside the git-ignored build folder)
#   E2E_PYTHON    interpreter that creates the venv (default: python3.11, else python3)
#   POSTERN_BIN   postern binary under test (default: target/release/postern)
set -euo pipefail

REPO_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_VENV=${E2E_VENV:-$REPO_DIR/target/e2e-venv}
export POSTERN_BIN=${POSTERN_BIN:-$REPO_DIR/target/release/postern}

if [ -z "${E2E_PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null; then
        E2E_PYTHON=python3.11
    else
        E2E_PYTHON=python3
    fi
fi

if [ ! -x "$E2E_VENV/bin/python" ]; then
    echo "run.sh: creating the venv $E2E_VENV with $E2E_PYTHON" >&2
    "$E2E_PYTHON" -m venv "$E2E_VENV"
fi
"$E2E_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REPO_DIR/tests/e2e/requirements.txt"

# LiteLLM's `litellm` command is in the venv's bin folder.
export PATH="$E2E_VENV/bin:$PATH"
# Keep pytest's cache and bytecode out of the source tree.
export PYTHONDONTWRITEBYTECODE=1
cd "$REPO_DIR"
exec "$E2E_VENV/bin/python" -m pytest -p no:cacheprovider tests/e2e "$@"
