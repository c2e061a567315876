#!/usr/bin/env python3
"""A weft remote worker in Python (psycopg 3), speaking docs/worker-protocol.md over PostgreSQL.

    python3 examples/python_worker.py --db postgres://... --topic py

It offers the tasks in TASKS (`name@version`); a flow runs them with a step such as
    [[task]]
    name = "sq"
    task = "py.square@1"
    executor = "remote"
"""
import argparse, json, os, select, signal, socket, time, traceback
import psycopg

LEASE = 10.0  # seconds: executors count this worker lost when it stops heartbeating this long


def square(args):
    return {"squared": args["n"] * args["n"]}


def fail(args):
    raise ValueError("asked to fail: %r" % args.get("why", "no reason"))


TASKS = {"py.square@1": square, "py.fail@1": fail}

NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint"


def send(conn, topic, kind, body, reply_to, correlation_id=None, attempt=0, plan=None):
    conn.execute(
        "INSERT INTO worker_messages (topic, kind, correlation_id, reply_to, attempt, plan_id,"
        " body, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, " + NOW + ")",
        (topic, kind, correlation_id, reply_to, attempt, plan, json.dumps(body)))
    conn.execute("SELECT pg_notify('weft', 'messages')")


def failure(exc):
    """A failure in the seed's shape (TaskFlow's Failure.to_dict)."""
    names = [c.__name__ for c in type(exc).__mro__ if c is not object]
    return {"exc_type_names": names, "exception_str": str(exc),
            "traceback_str": traceback.format_exc(), "causes": []}


def check_request(body):
    """The seed's REQUEST schema; the error names the field that is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the request is not a JSON object")
    for field in ("task_cls", "task_name", "action"):
        if not isinstance(body.get(field), str):
            raise ValueError("field `%s` is missing or not a string" % field)
    if body["action"] not in ("execute", "revert"):
        raise ValueError("field `action` must be execute or revert")
    version = body.get("task_version")
    if isinstance(version, list):
        version = ".".join(str(v) for v in version)
    if not isinstance(version, str):
        raise ValueError("field `task_version` is missing or not a string")
    if not isinstance(body.get("arguments", {}), dict):
        raise ValueError("field `arguments` is not an object")
    return "%s@%s" % (body["task_cls"], version)


def answer(conn, topic, m):
    mid, kind, correlation_id, reply_to, attempt, plan, raw = m
    if kind == "NOTIFY":
        if reply_to:
            send(conn, reply_to, "NOTIFY", {"topic": topic, "tasks": sorted(TASKS)}, topic)
        return
    if kind != "REQUEST" or not reply_to or not correlation_id:
        return  # nothing to answer (TaskFlow drops these too)

    def reply(state, data):
        send(conn, reply_to, "RESPONSE", {"state": state, "data": data}, topic,
             correlation_id, attempt, plan)

    try:
        body = json.loads(raw)
        wanted = check_request(body)
    except ValueError as e:
        return reply("FAILURE", {"result": failure(e)})
    task = TASKS.get(wanted)
    if task is None:
        return reply("FAILURE", {"result": failure(LookupError("no task %s here" % wanted))})
    reply("RUNNING", {})
    if body["action"] == "revert":
        return reply("SUCCESS", {"result": None})  # these tasks have nothing to undo
    try:
        reply("SUCCESS", {"result": task(body.get("arguments", {}))})
    except Exception as e:  # the task's own failure travels back in the seed's shape
        reply("FAILURE", {"result": failure(e)})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", default=os.environ.get("WEFT_DB"), required="WEFT_DB" not in os.environ)
    p.add_argument("--topic", required=True)
    args = p.parse_args()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    conn = psycopg.connect(args.db, autocommit=True)
    process = "python@%s:%d" % (socket.gethostname(), os.getpid())
    conn.execute(
        "INSERT INTO workers (topic, tasks, started_at, heartbeat_at, process, running, lease_ms)"
        " VALUES (%s, %s, " + NOW + ", " + NOW + ", %s, 0, %s) ON CONFLICT (topic) DO UPDATE"
        " SET tasks = excluded.tasks, started_at = excluded.started_at, heartbeat_at ="
        " excluded.heartbeat_at, process = excluded.process, lease_ms = excluded.lease_ms",
        (args.topic, sorted(TASKS), process, int(LEASE * 1000)))
    conn.add_notify_handler(lambda _: None)  # wake-ups only: the table holds the messages
    conn.execute("LISTEN weft")
    print("python worker %s serving %s" % (args.topic, ", ".join(sorted(TASKS))), flush=True)
    beat = 0.0
    while not stopping:
        if time.monotonic() - beat > LEASE / 3:
            conn.execute("UPDATE workers SET heartbeat_at = " + NOW + " WHERE topic = %s",
                         (args.topic,))
            beat = time.monotonic()
        with conn.transaction():
            taken = conn.execute(
                "DELETE FROM worker_messages WHERE id IN (SELECT id FROM worker_messages"
                " WHERE topic = %s ORDER BY id LIMIT 64 FOR UPDATE SKIP LOCKED) RETURNING id,"
                " kind, correlation_id, reply_to, attempt, plan_id, body",
                (args.topic,)).fetchall()
        for m in sorted(taken):
            answer(conn, args.topic, m)
        if not taken:  # sleep until a NOTIFY arrives (the next query reads it), 0.5 s at most
            select.select([conn.fileno()], [], [], 0.5)
    conn.execute("DELETE FROM workers WHERE topic = %s", (args.topic,))


if __name__ == "__main__":
    main()
