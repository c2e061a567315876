#!/usr/bin/env bash
# weft's whole test suite: formatting, lints, then every unit, integration and crash test
# against real SQLite files, a real PostgreSQL server and real processes. Run it from anywhere: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# What the suite needs from the system; installed with apt-get when missing.
need_pkgs=()
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc)       # rusqlite builds SQLite from source
command -v sh >/dev/null 2>&1 || need_pkgs+=(dash)      # command tasks in the tests use sh
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3) # examples/service.toml's tasks
# A real PostgreSQL: the tests make a throwaway cluster with initdb (unless WEFT_TEST_PG_URL
# names a server to use instead).
if [ -z "${WEFT_TEST_PG_URL:-}" ]; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
  command -v psql >/dev/null 2>&1 || need_pkgs+=(postgresql-client)
  command -v runuser >/dev/null 2>&1 || need_pkgs+=(util-linux)
fi
command -v faketime >/dev/null 2>&1 || need_pkgs+=(faketime) # a node with a skewed clock
# examples/python_worker.py, the Python worker the remote-worker tests run beside the Rust one
/usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1 || need_pkgs+=(python3-psycopg)
# a real Prometheus text parser for the test that scrapes `weft serve --metrics`
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || need_pkgs+=(python3-prometheus-client)
# the dashboard's browser tests drive Debian's Chromium
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
# the HTTP tests' tools from PyPI live in a virtual environment (below)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing ${need_pkgs[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; weft needs a Rust toolchain (cargo, rustfmt, clippy)" >&2
  exit 1
fi

# From PyPI, for the HTTP side: schemathesis (property tests generated from the OpenAPI
# document) and Playwright (drives Chromium through the dashboard), in target/pytools.
pytools="$PWD/target/pytools"
if ! "$pytools/bin/python3" -c 'import playwright, schemathesis' >/dev/null 2>&1; then
  echo "installing schemathesis and playwright into $pytools"
  python3 -m venv "$pytools"
  "$pytools/bin/pip" install -q --disable-pip-version-check playwright==1.65.2 schemathesis==4.32.5
fi
export WEFT_TEST_PYTOOLS="$pytools"

jobs="${CARGO_BUILD_JOBS:-2}"
# A clean checkout gains nothing from incremental caches, and they double the build's disk.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
# Every process the tests start inherits this mark; at the end none may be left.
export TEST_SUITE_MARK="weft-suite-$$-$(date +%s%N)"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -j "$jobs" -- -D warnings
echo "== cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -j "$jobs" --quiet
echo "== the declared rust-version is no older than any dependency's"
python3 scripts/msrv.py
echo "== no module imports another in a circle"
python3 scripts/imports.py
echo "== cargo deny (licenses, duplicate versions, sources, advisories; deny.toml)"
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "installing cargo-deny"
  cargo install cargo-deny --version 0.20.2 --locked -j "$jobs" --quiet
fi
cargo deny --log-level error check licenses bans sources
# RustSec's advisory database lives on GitHub: without it the check is skipped, and says so.
if ! advisories=$(cargo deny --log-level error check advisories 2>&1); then
  if grep -q "failed to fetch advisory database" <<<"$advisories"; then
    echo "advisories: skipped, the advisory database cannot be fetched from here"
  else
    echo "$advisories"
    exit 1
  fi
fi
echo "== the library crates package for crates.io (cargo publish --dry-run, in dependency order)"
cargo publish --dry-run --workspace --exclude weft-cli --exclude weft-bench --allow-dirty --no-verify --quiet
echo "== cargo test"
cargo test --workspace -j "$jobs"

echo "== no process of the suite left running"
# The throwaway PostgreSQL clusters stop shortly after their test process is gone.
left=""
for _ in $(seq 1 30); do
  left=$(python3 scripts/leftovers.py "$TEST_SUITE_MARK")
  [ -z "$left" ] && break
  sleep 0.5
done
if [ -n "$left" ]; then
  echo "error: the tests left processes running:" >&2
  for pid in $left; do ps -o pid=,args= -p "$pid" >&2 || true; done
  kill -KILL $left 2>/dev/null || true
  exit 1
fi
