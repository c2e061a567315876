#!/usr/bin/env bash
# Failover time, as a distribution: how long after a node is SIGKILLed another node runs the
# step the dead node was running. Each round: node A claims a plan whose one step records the
# time it starts and then works; node B starts; after a random pause (so the kill falls at any
# point of A's heartbeat cycle) A is SIGKILLed; the round's figure is the time from the kill
# to the step's start on B.
#
#   WEFT_DB=postgres://USER:PASSWORD@127.0.0.1:PORT/DB scripts/bench-failover.sh [ROUNDS] [LEASE]
#
# ROUNDS defaults to 10, LEASE to the node default (10s). Prints each round, then min, median
# and max in seconds. Needs a release build (cargo build --release -p weft-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-10}"
lease="${2:-10s}"
weft="$PWD/target/release/weft"
: "${WEFT_DB:?set WEFT_DB to the store to measure on (postgres://… or a SQLite path)}"
export WEFT_DB
[ -x "$weft" ] || { echo "build first: cargo build --release -p weft-cli" >&2; exit 1; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/failover.toml" <<'EOF'
name = "failover"
[[task]]
name = "work"
run = ["sh", "-c", 'date +%s.%N >> "$MARKS"; sleep 120']
EOF

figures=()
for round in $(seq 1 "$rounds"); do
  marks="$work/marks-$round"
  : > "$marks"
  MARKS="$marks" "$weft" serve --name "failover-a-$round" --lease "$lease" 2>"$work/a.log" &
  a=$!
  MARKS="$marks" "$weft" submit "$work/failover.toml" >/dev/null
  until [ -s "$marks" ]; do sleep 0.05; done
  MARKS="$marks" "$weft" serve --name "failover-b-$round" --lease "$lease" 2>"$work/b.log" &
  b=$!
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 1 + (r % 300) / 100 }')"
  killed=$(date +%s.%N)
  kill -KILL "$a"
  wait "$a" 2>/dev/null || true
  until [ "$(wc -l < "$marks")" -ge 2 ]; do sleep 0.02; done
  took=$(awk -v k="$killed" -v s="$(sed -n 2p "$marks")" 'BEGIN { printf "%.2f", s - k }')
  echo "round $round: $took s"
  figures+=("$took")
  id=$("$weft" plans list --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
  "$weft" plans halt "$id" >/dev/null
  kill -TERM "$b"
  wait "$b" 2>/dev/null || true
done
printf '%s\n' "${figures[@]}" | sort -n | awk '
  { v[NR] = $1 }
  END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "failover over %d kills: min %.2f s, median %.2f s, max %.2f s\n", NR, v[1], m, v[NR]
  }'
