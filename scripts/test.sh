#!/usr/bin/env bash
# Run every test of postern on a fresh machine: formatting and lints, the
# unit and integration tests (the real binary on loopback sockets), and the
# end-to-end tests with a real LiteLLM proxy and the official openai client.
#
# It installs what the tests need: the Python packages of tests/aws,
# tests/e2e and tests/k8s go into venvs under target/
# (tests/aws/install-moto.sh, tests/e2e/run.sh, tests/k8s/validate.sh), and
# the test OpenID provider (npm oidc-provider) and the browser driver (npm
# playwright-core) into tests/idp/node_modules (tests/idp/setup.sh, which
# installs Node.js and Chromium with apt-get when they are missing), and
# redis-server for the session tests (tests/redis/setup.sh, with apt-get).
# Nothing else is needed beyond a Rust toolchain and Python 3.11.
#
# Environment:
#   SKIP_E2E=1   skip the LiteLLM tests (they download about 760 MB once)
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "test OpenID provider and browser (npm oidc-provider, playwright-core, chromium)"
tests/idp/setup.sh

step "redis-server for the server-side session tests"
tests/redis/setup.sh

step "moto for the postern reconcile tests"
tests/aws/install-moto.sh

step "cargo test (unit and integration tests)"
POSTERN_MOTO_SERVER="$repo/target/moto-venv/bin/moto_server" cargo test --workspace --locked

step "Kubernetes manifests: postern render checked against the API schemas"
cargo build --locked --bin postern
POSTERN_BIN="$repo/target/debug/postern" tests/k8s/validate.sh

if [ "${SKIP_E2E:-0}" = 1 ]; then
    step "end-to-end tests skipped (SKIP_E2E=1)"
    exit 0
fi

step "end-to-end tests: LiteLLM behind both gates"
cargo build --locked --bin postern
POSTERN_BIN="$repo/target/debug/postern" tests/e2e/run.sh
