"""The tasks of examples/service.toml, one per role. Each logs `<time> <role> <event>` lines to
<workdir>/log.txt; its inputs come as WEFT_IN_* variables."""

import json
import os
import socket
import sys
import time
import urllib.request

ROLE = sys.argv[1]
WORKDIR = os.environ.get("WEFT_IN_WORKDIR", "/tmp/weft-service-demo")
WWW = os.path.join(WORKDIR, "www")
PORT = os.environ.get("WEFT_IN_PORT", "")


def log(event):
    os.makedirs(WORKDIR, exist_ok=True)
    with open(os.path.join(WORKDIR, "log.txt"), "a") as f:
        f.write(f"{time.time():.6f} {ROLE} {event}\n")


def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/{path}", timeout=2) as r:
        return r.read()


if ROLE == "port":
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log(f"port {port}")
    print(json.dumps({"port": port}))
elif ROLE == "serve":
    os.makedirs(WWW, exist_ok=True)
    log(f"start pid={os.getpid()}")
    sys.stdout.flush()
    # exec keeps the pid: the server is the process weft started, and stops on its SIGTERM.
    os.execvp("python3", ["python3", "-m", "http.server", "--bind", "127.0.0.1",
                          "--directory", WWW, PORT])
elif ROLE == "probe":
    get("")
    log("ok")
elif ROLE == "migrate":
    log("start")
    os.makedirs(WWW, exist_ok=True)
    with open(os.path.join(WWW, "data.json"), "w") as f:
        json.dump({"schema": 2}, f)
    log("end")
elif ROLE == "main":
    log(f"start pid={os.getpid()}")
    if os.environ.get("WEFT_IN_HOLD") == "true":
        while not os.path.exists(os.path.join(WORKDIR, "go")):
            time.sleep(0.05)
    data = json.loads(get("data.json"))
    if os.environ.get("WEFT_IN_FAIL") == "true":
        log("fail")
        sys.exit("main failed on purpose")
    log("end")
    print(json.dumps({"schema": data["schema"]}))
elif ROLE == "check":
    log("start")
    get("data.json")
    log("end")
elif ROLE == "cleanup":
    log("start")
    for name in os.listdir(WWW) if os.path.isdir(WWW) else []:
        os.remove(os.path.join(WWW, name))
    log("end")
elif ROLE == "report":
    main = json.loads(os.environ["WEFT_IN_SITE_MAIN"])
    log(f"schema {main['schema']}")
    print(json.dumps({"summary": f"the server served schema {main['schema']}"}))
else:
    sys.exit(f"unknown role {ROLE}")
