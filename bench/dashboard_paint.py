"""Dashboard first paint of a 1,000-step plan in headless Chromium (target ≤ 500 ms).

A node on a fresh SQLite file runs a linear flow of 1,000 `true` commands to its end (so the
page holds every step and its 3,000-entry history); then Chromium opens the plan's page
REPEAT times and reports the median first-contentful-paint from navigation start.

    target/pytools/bin/python3 bench/dashboard_paint.py ./target/release/weft [REPEAT]
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from playwright.sync_api import sync_playwright


def main(weft, repeat=5):
    with tempfile.TemporaryDirectory() as d:
        flow = os.path.join(d, "big.toml")
        with open(flow, "w") as f:
            f.write('name = "big"\n')
            for i in range(1000):
                f.write(f'[[task]]\nname = "s{i:04}"\nrun = ["true"]\n')
                if i:
                    f.write(f'after = ["s{i - 1:04}"]\n')
        db = os.path.join(d, "weft.db")
        log = open(os.path.join(d, "node.log"), "w+")
        node = subprocess.Popen([weft, "serve", "--db", db, "--http", "127.0.0.1:0"], stderr=log)
        try:
            port = None
            for _ in range(200):
                log.seek(0)
                m = re.search(r"HTTP API at http://127\.0\.0\.1:(\d+)", log.read())
                if m:
                    port = int(m.group(1))
                    break
                time.sleep(0.05)
            plan = subprocess.run([weft, "submit", "--db", db, flow, "--wait"],
                                  capture_output=True, text=True, check=True).stdout.split()[0]
            base = f"http://127.0.0.1:{port}"
            size = len(urllib.request.urlopen(f"{base}/plans/{plan}").read())
            paints = []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=["--no-sandbox", "--disable-gpu"])
                for _ in range(repeat + 1):
                    page = browser.new_page()
                    page.goto(f"{base}/plans/{plan}", wait_until="load")
                    fcp = page.evaluate(
                        "() => new Promise(r => new PerformanceObserver((l) => r(l.getEntries()[0].startTime))"
                        ".observe({type: 'paint', buffered: true}))")
                    paints.append(fcp)
                    page.close()
                browser.close()
            paints = paints[1:]  # the first run warms the browser's caches
            print(json.dumps({"scenario": "dashboard-paint-1000", "page_bytes": size,
                              "median_ms": round(statistics.median(paints), 1),
                              "range_ms": [round(min(paints), 1), round(max(paints), 1)],
                              "target_ms": 500}))
        finally:
            node.terminate()
            node.wait()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5)
