#!/usr/bin/env python3
"""Drive weft over HTTP from Python, with the standard library only: submit a flow, wait for
its gate, send the event, wait for the result, read what a step printed.

    weft serve --http 127.0.0.1:8080 &
    python3 examples/python_client.py http://127.0.0.1:8080 examples/approval.toml

WEFT_TOKEN, when the server has one, is sent as the bearer token.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request


class Weft:
    def __init__(self, base):
        self.base = base.rstrip("/")
        self.token = os.environ.get("WEFT_TOKEN")

    def call(self, method, path, body=None):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            problem = json.load(e)  # an RFC 9457 problem document
            raise SystemExit(f"{method} {path}: {problem['status']} {problem['detail']}")

    def submit(self, flow_text, inputs=None):
        return self.call("POST", "/api/plans", {"flow": flow_text, "inputs": inputs or {}})["id"]

    def plan(self, plan_id):
        return self.call("GET", f"/api/plans/{plan_id}")

    def wait(self, plan_id, done, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            plan = self.plan(plan_id)
            if done(plan):
                return plan
            time.sleep(0.2)
        raise SystemExit(f"plan {plan_id} did not get there in {timeout}s")

    def event(self, plan_id, step, data):
        return self.call("POST", f"/api/plans/{plan_id}/events", {"step": step, "data": data})

    def logs(self, plan_id, step):
        page = self.call("GET", f"/api/plans/{plan_id}/logs?step={step}")
        return "".join(c["text"] for c in page["chunks"])


def main(base, flow_path):
    weft = Weft(base)
    with open(flow_path) as f:
        plan_id = weft.submit(f.read())
    print("submitted", plan_id)

    def waiting(plan):
        ended = plan["state"] in ("stopped", "paused")
        return ended or any(s["state"] == "suspended" for s in plan["steps"])

    plan = weft.wait(plan_id, waiting)
    for step in plan["steps"]:
        if step["state"] == "suspended":
            print("sending the event to", step["name"])
            weft.event(plan_id, step["name"], {"approver": "python"})
    plan = weft.wait(plan_id, lambda p: p["state"] in ("stopped", "paused"))
    print("plan", plan["state"], plan["result"])
    for step in plan["steps"]:
        printed = weft.logs(plan_id, step["name"]).strip()
        if printed:
            print(f"--- {step['name']} printed:\n{printed}")
    return 0 if plan["result"] in ("success", "warning") else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
