#!/usr/bin/env bash
# weft's whole test suite: formatting, lints, then every unit, integration and crash test
# against real SQLite files and real processes. Run it from anywhere: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# What the suite needs from the system; installed with apt-get when missing.
need_pkgs=()
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc)       # rusqlite builds SQLite from source
command -v sh >/dev/null 2>&1 || need_pkgs+=(dash)      # command tasks in the tests use sh
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing ${need_pkgs[*]}"
  apt-get update -qq && apt-get install -y -qq "${need_pkgs[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; weft needs a Rust toolchain (cargo, rustfmt, clippy)" >&2
  exit 1
fi

jobs="${CARGO_BUILD_JOBS:-2}"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -j "$jobs" -- -D warnings
echo "== cargo test"
cargo test --workspace -j "$jobs"
