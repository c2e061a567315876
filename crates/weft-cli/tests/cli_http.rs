//! `weft serve --http`: the JSON API over a real node, a real SQLite file and real HTTP on a
//! loopback port — a plan driven from submit to its end, operator actions, the job board, bad
//! input refused with problem documents and nothing changed, and the token rules.

mod common;
use common::{http, http_port, text, wait_for, NodeProcess, Response, Sandbox, APPROVAL};
use serde_json::{json, Value};
use std::time::Duration;

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn node(sb: &Sandbox, extra: &[&str]) -> (NodeProcess, u16) {
    let mut args = vec!["--http", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let node = NodeProcess::start(sb, "n1", &args);
    let port = http_port(&node);
    (node, port)
}

fn get(port: u16, path: &str) -> Response {
    http(port, "GET", path, &[], b"")
}

fn post(port: u16, path: &str, body: &Value) -> Response {
    http(port, "POST", path, &[JSON], body.to_string().as_bytes())
}

fn plan_until(port: u16, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, Duration::from_secs(20), || {
        let r = get(port, &format!("/api/plans/{id}"));
        assert_eq!(r.status, 200, "{}", text(&r.body));
        let plan = r.json();
        done(&plan).then_some(plan)
    })
}

fn assert_problem(r: &Response, status: u16, detail: &str) {
    assert_eq!(r.status, status, "{}", text(&r.body));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let p = r.json();
    assert_eq!(p["status"], status);
    assert!(p["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("urn:weft:problem:")));
    let d = p["detail"].as_str().expect("a detail");
    assert!(d.contains(detail), "`{detail}` in `{d}`");
}

#[test]
fn a_plan_is_driven_over_http_from_submit_to_its_end() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path().join("flows")).expect("dir");
    sb.write("flows/approval.toml", APPROVAL);
    let (_node, port) = node(&sb, &["--flows", "flows"]);

    // By name, with an input.
    let r = post(
        port,
        "/api/plans",
        &json!({"name": "approval", "inputs": {"who": "http"}}),
    );
    assert_eq!(r.status, 201, "{}", text(&r.body));
    let id = r.json()["id"].as_str().expect("an id").to_string();
    let plan = plan_until(port, &id, "the gate to wait", |p| {
        p["steps"][1]["state"] == "suspended"
    });
    assert_eq!(plan["state"], "running");
    assert_eq!(plan["inputs"]["who"], "http");
    assert_eq!(plan["steps"][0]["output"]["greeted"], true);
    assert_eq!(plan["steps"][1]["deps"], json!([0]));
    assert_eq!(plan["steps"][1]["kind"], "gate");
    assert!(plan["executed_by"]
        .as_str()
        .is_some_and(|o| o.starts_with("n1/")));

    // What the first step printed.
    let logs = wait_for("the step's output", Duration::from_secs(10), || {
        let l = get(
            port,
            &format!("/api/plans/{id}/logs?step=greet&stream=stdout"),
        )
        .json();
        (!l["chunks"].as_array()?.is_empty()).then_some(l)
    });
    assert!(logs["chunks"][0]["text"]
        .as_str()
        .expect("text")
        .starts_with("hello http\n"));
    let next = logs["next"].as_i64().expect("next");
    let after = get(port, &format!("/api/plans/{id}/logs?after={next}")).json();
    assert_eq!(after["chunks"], json!([]), "nothing after the last chunk");

    // A prefix of the id does, as on the command line.
    let r = post(
        port,
        &format!("/api/plans/{}/events", &id[..30]),
        &json!({"step": "approve", "data": {"by": "alice"}}),
    );
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let plan = plan_until(port, &id, "the plan to end", |p| p["state"] == "stopped");
    assert_eq!(plan["result"], "success");
    assert_eq!(plan["steps"][1]["output"]["by"], "alice");

    // An event for a step that no longer waits is a conflict; an optional one is dropped.
    let r = post(
        port,
        &format!("/api/plans/{id}/events"),
        &json!({"step": "approve"}),
    );
    assert_problem(&r, 409, "not suspended");
    let r = post(
        port,
        &format!("/api/plans/{id}/events"),
        &json!({"step": "approve", "optional": true}),
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["message"]
        .as_str()
        .expect("message")
        .starts_with("event dropped"));
    let r = post(
        port,
        &format!("/api/plans/{id}/events"),
        &json!({"step": "nope"}),
    );
    assert_problem(&r, 400, "has no step `nope`");

    let history = get(port, &format!("/api/plans/{id}/history")).json();
    let moves: Vec<(Value, Value)> = history
        .as_array()
        .expect("entries")
        .iter()
        .filter(|h| h["step"].is_null())
        .map(|h| (h["from"].clone(), h["to"].clone()))
        .collect();
    assert_eq!(moves.first(), Some(&(json!("planned"), json!("running"))));
    assert_eq!(moves.last(), Some(&(json!("running"), json!("stopped"))));

    // Listing: filters and pages.
    let text_flow = std::fs::read_to_string(sb.path().join("flows/approval.toml")).expect("flow");
    for _ in 0..2 {
        let r = post(
            port,
            "/api/plans",
            &json!({"flow": text_flow, "start_at": "2099-01-01T00:00:00Z"}),
        );
        assert_eq!(r.status, 201);
        assert_eq!(r.json()["state"], "scheduled");
    }
    let page = get(port, "/api/plans?limit=2").json();
    assert_eq!(page["plans"].as_array().expect("plans").len(), 2);
    let next = page["next"].as_str().expect("a next page");
    let rest = get(port, &format!("/api/plans?limit=2&before={next}")).json();
    assert_eq!(rest["plans"][0]["id"], id.as_str());
    assert!(rest["next"].is_null());
    let stopped = get(port, "/api/plans?state=stopped").json();
    assert_eq!(stopped["plans"].as_array().expect("plans").len(), 1);
    let found = get(port, &format!("/api/plans?search={}", &id[..36])).json();
    assert_eq!(found["plans"].as_array().expect("plans").len(), 1);
    assert_problem(&get(port, "/api/plans?state=sleeping"), 400, "sleeping");
    assert_problem(&get(port, "/api/plans?limit=0"), 400, "limit 0");

    // A scheduled plan is cancelled before it starts.
    let scheduled = page["plans"][0]["id"].as_str().expect("id");
    let r = post(port, &format!("/api/plans/{scheduled}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let plan = get(port, &format!("/api/plans/{scheduled}")).json();
    assert_eq!(
        (plan["state"].as_str(), plan["result"].as_str()),
        (Some("stopped"), Some("cancelled"))
    );

    let doc = get(port, "/openapi.json").json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/plans",
        "/api/plans/{id}",
        "/api/plans/{id}/events",
        "/api/jobs",
        "/api/workers",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
}

#[test]
fn operators_halt_skip_and_resume_over_http() {
    let sb = Sandbox::new();
    let (_node, port) = node(&sb, &[]);
    let sleepy = "name = \"sleepy\"\n[[task]]\nname = \"nap\"\nrun = [\"sleep\", \"30\"]\n";
    let id = post(port, "/api/plans", &json!({"flow": sleepy})).json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    plan_until(port, &id, "the nap to start", |p| {
        p["steps"][0]["state"] == "running"
    });
    let r = post(port, &format!("/api/plans/{id}/halt"), &json!({}));
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let plan = get(port, &format!("/api/plans/{id}")).json();
    assert_eq!(plan["state"], "stopped");
    assert_problem(
        &post(port, &format!("/api/plans/{id}/halt"), &json!({})),
        409,
        "already stopped",
    );
    assert_problem(
        &post(port, &format!("/api/plans/{id}/resume"), &json!({})),
        409,
        "stopped",
    );

    // A failing step pauses its plan; skipping it and resuming finishes the rest.
    let flaky = "name = \"flaky\"\n[[task]]\nname = \"bad\"\nrun = [\"false\"]\n\
                 [[task]]\nname = \"after\"\nafter = [\"bad\"]\nrun = [\"true\"]\n\
                 [[task]]\nname = \"free\"\nrun = [\"true\"]\n";
    let id = post(port, "/api/plans", &json!({"flow": flaky})).json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    let plan = plan_until(port, &id, "the plan to pause", |p| p["state"] == "paused");
    assert_eq!(plan["steps"][0]["failure"]["exit_code"], 1);
    let r = post(
        port,
        &format!("/api/plans/{id}/skip"),
        &json!({"step": "bad"}),
    );
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let r = post(port, &format!("/api/plans/{id}/resume"), &json!({}));
    assert_eq!(r.status, 202, "{}", text(&r.body));
    let plan = plan_until(port, &id, "the resumed plan to end", |p| {
        p["state"] == "stopped"
    });
    let states: Vec<&str> = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, ["skipped", "skipped", "success"]);
    assert_problem(&post(port, "/api/plans/0000/halt", &json!({})), 404, "0000");
}

#[test]
fn the_job_board_over_http() {
    let sb = Sandbox::new();
    // No conductor: the job stays on the board.
    let (_node, port) = node(&sb, &["--max-simultaneous-jobs", "0"]);
    let flow = "name = \"nightly\"\n[[task]]\nname = \"t\"\nrun = [\"true\"]\n";
    let r = post(
        port,
        "/api/jobs",
        &json!({"flow": flow, "priority": "HIGH", "name": "n-1"}),
    );
    assert_eq!(r.status, 201, "{}", text(&r.body));
    let job = r.json();
    assert_eq!(
        (
            job["name"].as_str(),
            job["priority"].as_str(),
            job["state"].as_str()
        ),
        (Some("n-1"), Some("HIGH"), Some("unclaimed"))
    );
    let id = job["id"].as_str().expect("id");
    let board = get(port, "/api/jobs").json();
    assert_eq!(board[0]["id"], id);
    assert_eq!(get(port, &format!("/api/jobs/{id}")).json()["name"], "n-1");
    let r = post(port, &format!("/api/jobs/{id}/trash"), &json!({}));
    assert_eq!(r.status, 200, "{}", text(&r.body));
    assert_eq!(get(port, "/api/jobs").json(), json!([]));
    assert_eq!(get(port, "/api/jobs?state=trashed").json()[0]["id"], id);
    assert_problem(
        &post(
            port,
            "/api/jobs",
            &json!({"flow": flow, "priority": "URGENT"}),
        ),
        400,
        "URGENT",
    );
    assert_problem(&get(port, "/api/jobs?state=gone"), 400, "gone");
    let nodes = get(port, "/api/nodes").json();
    assert_eq!(nodes[0]["name"], "n1");
    assert_eq!(get(port, "/api/workers").json(), json!([]));
}

#[test]
fn bad_requests_get_problems_and_change_nothing() {
    let sb = Sandbox::new();
    let (_node, port) = node(&sb, &[]);
    // Headers, body, the status and what its detail says.
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (vec![JSON], b"{not json".to_vec(), 400, "the request's body"),
        (vec![JSON], br#"{"flow": 3}"#.to_vec(), 400, "invalid type"),
        (vec![JSON], br#"{"flow": "x", "extra": 1}"#.to_vec(), 400, "unknown field `extra`"),
        (vec![JSON], br#"{"flow": "name = \"a\"\n[[task]]\nname = \"t\"\nrun = 5\n"}"#.to_vec(), 400, ":4"),
        (vec![JSON], br#"{"name": "nothing"}"#.to_vec(), 400, "no flow is named `nothing`"),
        (vec![JSON], br#"{}"#.to_vec(), 400, "give the flow"),
        (vec![JSON], br#"{"flow": "name = \"a\"\n[[task]]\nname = \"t\"\nrun = [\"true\"]\n", "executor": "moon"}"#.to_vec(), 400, "moon"),
        (vec![JSON], br#"{"flow": "name = \"a\"\n[inputs]\nx = {}\n[[task]]\nname = \"t\"\nrun = [\"true\"]\nrequires = [\"x\"]\n"}"#.to_vec(), 400, "x"),
        (vec![], br#"{}"#.to_vec(), 415, "Content-Type"),
        (vec![JSON], vec![b' '; weft_server::MAX_BODY + 1], 413, ""),
    ];
    for (headers, body, status, detail) in cases {
        let r = http(port, "POST", "/api/plans", &headers, &body);
        assert_problem(&r, status, detail);
    }
    assert_problem(&get(port, "/api/nowhere"), 404, "/api/nowhere");
    assert_problem(&http(port, "DELETE", "/api/plans", &[], b""), 405, "DELETE");
    assert_eq!(
        get(port, "/api/plans").json()["plans"],
        json!([]),
        "nothing was stored"
    );
}

#[test]
fn a_token_guards_every_change_and_a_reachable_address_needs_one() {
    let sb = Sandbox::new();
    let out = sb.run(&["serve", "--http", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("without a token"),
        "{}",
        text(&out.stderr)
    );

    let mut node_cmd = sb.weft();
    node_cmd.env("WEFT_TOKEN", "s3cret").args([
        "serve",
        "--name",
        "n1",
        "--lease",
        "2s",
        "--http",
        "127.0.0.1:0",
    ]);
    let node = NodeProcess::spawn_logged(&sb, "serve-token", node_cmd);
    let port = http_port(&node);
    let flow =
        json!({"flow": "name = \"a\"\n[[task]]\nname = \"t\"\nrun = [\"true\"]\n"}).to_string();
    let r = http(port, "POST", "/api/plans", &[JSON], flow.as_bytes());
    assert_problem(&r, 401, "Bearer");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = http(
        port,
        "POST",
        "/api/plans",
        &[JSON, ("Authorization", "Bearer wrong")],
        flow.as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        get(port, "/api/plans").json()["plans"],
        json!([]),
        "reads need no token; nothing stored"
    );
    let r = http(
        port,
        "POST",
        "/api/plans",
        &[JSON, ("Authorization", "Bearer s3cret")],
        flow.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", text(&r.body));
    // Another origin cannot change anything, token or not; nor can a rebound host name read.
    let r = http(
        port,
        "POST",
        "/api/plans",
        &[
            JSON,
            ("Authorization", "Bearer s3cret"),
            ("Origin", "http://evil.example"),
        ],
        flow.as_bytes(),
    );
    assert_problem(&r, 403, "another origin");
    assert!(!node.log().contains("s3cret"), "the token is never logged");
}

#[test]
fn https_with_a_certificate_and_plain_http_refused() {
    let sb = Sandbox::new();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(sb.path())
            .args(args)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    sb.write("san.ext", "subjectAltName = IP:127.0.0.1\n");
    openssl(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ca",
        "-keyout", "ca.key", "-out", "ca.pem",
    ]);
    openssl(&[
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=weft", "-keyout", "key.pem", "-out",
        "req.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "cert.pem",
    ]);

    let out = sb.run(&[
        "serve",
        "--http",
        "127.0.0.1:0",
        "--tls-cert",
        "cert.pem",
        "--tls-key",
        "missing.pem",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--tls-key missing.pem"),
        "{}",
        text(&out.stderr)
    );
    let out = sb.run(&["serve", "--http", "127.0.0.1:0", "--tls-cert", "cert.pem"]);
    assert_eq!(out.status.code(), Some(2), "a certificate needs its key");

    let (node, port) = node(&sb, &["--tls-cert", "cert.pem", "--tls-key", "key.pem"]);
    assert!(
        node.log().contains("HTTP API at https://"),
        "{}",
        node.log()
    );
    // A client that trusts the CA submits and reads over HTTPS.
    let script = format!(
        "import json, ssl, urllib.request\n\
         ctx = ssl.create_default_context(cafile='ca.pem')\n\
         base = 'https://127.0.0.1:{port}'\n\
         body = json.dumps({{'flow': 'name = \"t\"\\n[[task]]\\nname = \"a\"\\nrun = [\"true\"]\\n'}}).encode()\n\
         req = urllib.request.Request(base + '/api/plans', body, {{'Content-Type': 'application/json'}})\n\
         created = json.load(urllib.request.urlopen(req, context=ctx))\n\
         plan = json.load(urllib.request.urlopen(base + '/api/plans/' + created['id'], context=ctx))\n\
         print(plan['id'] == created['id'])\n"
    );
    let out = std::process::Command::new("python3")
        .current_dir(sb.path())
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert_eq!(text(&out.stdout).trim(), "True", "{}", text(&out.stderr));
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(b"GET /api/plans HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(!text(&answer).contains("HTTP/1.1 200"), "{}", text(&answer));
}

#[test]
fn an_idempotency_key_over_http_answers_the_first_plan() {
    let sb = Sandbox::new();
    let (_node, port) = node(&sb, &[]);
    let flow = "name = \"k\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n";
    let body = json!({"flow": flow, "key": "order-42"});
    let first = post(port, "/api/plans", &body);
    assert_eq!(first.status, 201, "{}", text(&first.body));
    let again = post(port, "/api/plans", &body);
    assert_eq!(again.status, 200, "{}", text(&again.body));
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(again.json()["deduplicated"], true);
    assert_eq!(
        get(port, "/api/plans").json()["plans"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let bad = post(
        port,
        "/api/plans",
        &json!({"flow": flow, "key": "x", "key_window": "forever"}),
    );
    assert_problem(&bad, 400, "key_window");
}

#[test]
fn a_plan_is_rerun_from_a_step_over_http() {
    let sb = Sandbox::new();
    let (_node, port) = node(&sb, &[]);
    let flow = "name = \"xy\"\n[[task]]\nname = \"x\"\nrun = [\"true\"]\n\
                [[task]]\nname = \"y\"\nafter = [\"x\"]\nrun = [\"true\"]\n";
    let id = post(port, "/api/plans", &json!({"flow": flow})).json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    plan_until(port, &id, "the plan to end", |p| p["state"] == "stopped");
    let r = post(
        port,
        &format!("/api/plans/{id}/rerun"),
        &json!({"from": "y"}),
    );
    assert_eq!(r.status, 201, "{}", text(&r.body));
    let again = r.json()["id"].as_str().expect("id").to_string();
    let plan = plan_until(port, &again, "the rerun to end", |p| {
        p["state"] == "stopped"
    });
    assert_eq!(plan["result"], "success");
    let history = get(port, &format!("/api/plans/{again}/history")).json();
    let by_x: Vec<&str> = history
        .as_array()
        .expect("entries")
        .iter()
        .filter(|h| h["step"] == 0)
        .filter_map(|h| h["by"].as_str())
        .collect();
    assert_eq!(by_x, vec![format!("copied from plan {id}"); 2]);
    assert_problem(
        &post(
            port,
            &format!("/api/plans/{id}/rerun"),
            &json!({"from": "nope"}),
        ),
        400,
        "has no step `nope`",
    );
}
