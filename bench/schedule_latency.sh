#!/usr/bin/env bash
# How late a schedule fires after its tick on an idle node (SQLite): a schedule firing every
# second for SECONDS (default 20), then each plan's creation time past its whole second.
# Prints the median and the range in ms.   bench/schedule_latency.sh ./target/release/weft [SECONDS]
set -euo pipefail
weft="$(realpath "$1")"; seconds="${2:-20}"
dir="$(mktemp -d)"; trap 'kill $node 2>/dev/null || true; rm -rf "$dir"' EXIT
cd "$dir"
printf 'name = "tick"\n[[task]]\nname = "a"\nrun = ["true"]\n' > tick.toml
"$weft" schedules add tick tick.toml --cron "* * * * * *" --overlap allow 2>/dev/null
"$weft" serve --name bench 2>node.log & node=$!
sleep "$seconds"
"$weft" schedules pause tick 2>/dev/null
"$weft" plans list --json --limit 1000 | python3 -c '
import json, statistics, sys
from datetime import datetime
created = sorted(int(datetime.fromisoformat(p["created_at"].replace("Z", "+00:00")).timestamp() * 1000)
                 for p in json.load(sys.stdin))
late = sorted(t % 1000 for t in created[1:])   # the first tick may find the node starting
print(json.dumps({"scenario": "schedule-latency", "ticks": len(late),
                  "median_ms": statistics.median(late), "range_ms": [late[0], late[-1]], "target_ms": 50}))'
