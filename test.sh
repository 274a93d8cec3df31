#!/usr/bin/env bash
# Runs the whole Sluis test suite on a fresh machine that has the Rust toolchain and Python 3.
# It installs what the tests need (a Python venv with pyarrow and friends in .venv, and
# cargo-nextest when missing), runs the conformance suites, then every test with nextest.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
SHARED="${SLUIS_SHARED:-$ROOT/../shared}"
step() { printf '\n==> %s\n' "$*"; }
# disk a clean debug build of every target takes (measured 2026-11-25, see README)
NEED_MB=4000

step "Python test clients (.venv: $(python3 --version 2>&1))"
if [ ! -x .venv/bin/python ]; then
  if ! python3 -m venv .venv 2>/dev/null; then
    # Debian's python3 ships venv separately.
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .venv
    else
      echo "python3 -m venv failed: install the python3-venv package" >&2; exit 1
    fi
  fi
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
export SLUIS_PYTHON="$ROOT/.venv/bin/python"

step "Test runner"
if cargo nextest --version >/dev/null 2>&1; then
  RUNNER=nextest
else
  echo "cargo-nextest not found: installing it (one time, a few minutes)"
  if cargo install cargo-nextest --locked --quiet; then RUNNER=nextest; else RUNNER=test; fi
fi

step "Build (debug, all targets)"
TARGET="${CARGO_TARGET_DIR:-target}"
mkdir -p "$TARGET"
free_mb=$(df -Pm "$TARGET" | awk 'NR==2 {print $4}')
if [ "${free_mb:-0}" -lt "$NEED_MB" ]; then
  echo "warning: $free_mb MB free under $TARGET; a clean build needs about $NEED_MB MB." >&2
  echo "         Free some space, or set CARGO_TARGET_DIR to a larger disk." >&2
fi
if [ "${CI:-}" = true ]; then
  # a one-shot build never reuses incremental state: skip writing it
  export CARGO_INCREMENTAL=0
fi
cargo build --workspace --all-targets --locked

status=0
step "Conformance: ODRL test suite"
if [ -d "$SHARED/spec/odrl-test-suite" ]; then
  # the binary the workspace build made: `cargo run -p` would resolve other features and rebuild
  "$TARGET/debug/odrl-suite" "$SHARED/spec/odrl-test-suite" conformance/odrl-cases || status=1
else
  echo "FAILED: the shared ODRL test suite is not at $SHARED/spec/odrl-test-suite (set SLUIS_SHARED)"
  status=1
fi

step "Tests"
if [ "$RUNNER" = nextest ]; then
  cargo nextest run --workspace --locked --no-fail-fast --failure-output final || status=1
else
  cargo test --workspace --locked --no-fail-fast || status=1
fi
exit $status
