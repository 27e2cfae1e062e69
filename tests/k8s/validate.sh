#!/usr/bin/env bash
# Validate the manifests that `postern render` writes for each example vars file against the
# Kubernetes API schemas, offline.
#
# Creates a Python venv if it is missing and installs tests/k8s/requirements.txt into it: a
# pinned kubernetes-validate, which ships the schemas. Then renders every
# tests/fixtures/*-vars.yaml into a temporary folder with the built binary and runs
# `kubernetes-validate --strict` (unknown fields are errors) on every rendered YAML file, once
# per Kubernetes version in K8S_VERSIONS. A file fails on a validation error, on any warning
# (such as "Couldn't find schema" for a kind the schemas lack, which kubernetes-validate exits 0
# on), and when fewer objects passed than the file holds. The exit code is 1 if any file failed.
#
# Environment:
#   K8S_VALIDATE_VENV  venv folder (default: target/k8s-validate-venv, inside the git-ignored build folder)
#   K8S_PYTHON         interpreter that creates the venv (default: python3.11, else python3)
#   K8S_VERSIONS       Kubernetes versions to validate against (default: "1.33.0 1.37.0", an older
#                      release and the newest one the pinned package ships)
#   POSTERN_BIN        postern binary under test (default: target/debug/postern)
set -euo pipefail

REPO_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
K8S_VALIDATE_VENV=${K8S_VALIDATE_VENV:-$REPO_DIR/target/k8s-validate-venv}
K8S_VERSIONS=${K8S_VERSIONS:-1.33.0 1.37.0}
POSTERN_BIN=${POSTERN_BIN:-$REPO_DIR/target/debug/postern}

if [ ! -x "$POSTERN_BIN" ]; then
    echo "validate.sh: $POSTERN_BIN is missing; run cargo build --bin postern or set POSTERN_BIN" >&2
    exit 1
fi

if [ -z "${K8S_PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null; then
        K8S_PYTHON=python3.11
    else
        K8S_PYTHON=python3
    fi
fi

if [ ! -x "$K8S_VALIDATE_VENV/bin/python" ]; then
    echo "validate.sh: creating the venv $K8S_VALIDATE_VENV with $K8S_PYTHON" >&2
    "$K8S_PYTHON" -m venv "$K8S_VALIDATE_VENV"
fi
"$K8S_VALIDATE_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$REPO_DIR/tests/k8s/requirements.txt"
validate="$K8S_VALIDATE_VENV/bin/kubernetes-validate"

work=$(mktemp -d "${TMPDIR:-/tmp}/postern-k8s.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Writes a self-signed certificate and key for each gate under $1/tls/<gate>/, because render
# validates the vars file and so reads the TLS files it names.
make_tls_files() {
    local gate
    for gate in public private; do
        mkdir -p "$1/tls/$gate"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
            -subj "/CN=$gate.postern.test" \
            -keyout "$1/tls/$gate/tls.key" -out "$1/tls/$gate/tls.crt" 2>/dev/null
    done
}

# Validates one rendered file against one Kubernetes version; prints the report and returns 1
# when the file fails.
validate_file() {
    local file=$1 version=$2 output expected valid status=0
    output=$("$validate" --strict -k "$version" "$file" 2>&1) || status=$?
    # Every object starts with a top-level kind; the vars text inside the ConfigMap is indented.
    expected=$(grep -c '^kind: ' "$file" || true)
    valid=$(grep -c ' passed for resource ' <<<"$output" || true)
    if [ "$status" -ne 0 ] || grep -q '^WARN' <<<"$output" || [ "$valid" -ne "$expected" ]; then
        echo "FAILED $file against Kubernetes $version: $valid of $expected objects valid"
        echo "$output"
        return 1
    fi
}

passed=0
failed=0
for fixture in "$REPO_DIR"/tests/fixtures/*-vars.yaml; do
    name=$(basename "$fixture" .yaml)
    dir="$work/$name"
    mkdir -p "$dir"
    make_tls_files "$dir"
    # The cluster example names its TLS files under /etc/postern/tls/. Pods resolve a relative
    # path against /etc/postern, so naming them relative to the copy renders the same mounts.
    sed 's#/etc/postern/tls/#tls/#g' "$fixture" >"$dir/$name.yaml"
    "$POSTERN_BIN" render --config "$dir/$name.yaml" --out "$dir/manifests"

    for file in "$dir"/manifests/*.yaml; do
        for version in $K8S_VERSIONS; do
            if validate_file "$file" "$version"; then
                passed=$((passed + 1))
            else
                failed=$((failed + 1))
            fi
        done
    done
done

echo "validated each rendered file once per Kubernetes version ($K8S_VERSIONS)"
echo "validate: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
