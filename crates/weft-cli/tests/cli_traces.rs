//! `weft serve --otlp-endpoint`: a plan arrives at an OTLP/HTTP receiver as a trace — its root
//! span and a span per step attempt under it — and a command's `TRACEPARENT` names its step's
//! span, so the command's own spans join the trace.

mod common;
use common::{text, wait_for, NodeProcess, Sandbox};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A small OTLP/HTTP receiver: every JSON body POSTed to /v1/traces.
fn receiver() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let bodies = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let (mut line, mut length, mut path) = (String::new(), 0usize, String::new());
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if path.is_empty() {
                    path = line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_ok() && path == "/v1/traces" {
                if let Ok(v) = serde_json::from_slice(&body) {
                    bodies.lock().expect("lock").push(v);
                }
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        }
    });
    (port, got)
}

fn spans(got: &Mutex<Vec<serde_json::Value>>) -> Vec<serde_json::Value> {
    got.lock()
        .expect("lock")
        .iter()
        .flat_map(|b| {
            b["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn a_plan_is_a_trace_and_its_commands_join_it() {
    let sb = Sandbox::new();
    sb.write(
        "traced.toml",
        "name = \"traced\"\n[[task]]\nname = \"first\"\n\
         run = [\"sh\", \"-c\", 'echo \"{\\\"tp\\\": \\\"$TRACEPARENT\\\"}\"']\nprovides = [\"tp\"]\n\
         [[task]]\nname = \"second\"\nafter = [\"first\"]\nrun = [\"true\"]\n",
    );
    let (port, got) = receiver();
    let endpoint = format!("http://127.0.0.1:{port}");
    let _node = NodeProcess::start(&sb, "n1", &["--otlp-endpoint", &endpoint]);
    let out = sb.run(&["submit", "traced.toml", "--wait", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = sb.last_plan();
    let all = wait_for("the plan's spans", Duration::from_secs(15), || {
        let s = spans(&got);
        (s.len() >= 3).then_some(s)
    });
    let trace = id.replace('-', "");
    let root = all
        .iter()
        .find(|s| s["name"] == "plan traced")
        .expect("a root span");
    assert_eq!(root["traceId"], trace.as_str());
    assert!(root.get("parentSpanId").is_none());
    for name in ["first", "second"] {
        let span = all
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("a span for {name}: {all:#?}"));
        assert_eq!(span["traceId"], trace.as_str());
        assert_eq!(span["parentSpanId"], root["spanId"]);
        assert_eq!(span["status"]["code"], 1);
    }
    // The command's TRACEPARENT is its step's span.
    let shown = sb.show(&id);
    let tp = common::step(&shown, "first")["output"]["tp"]
        .as_str()
        .expect("the command printed its TRACEPARENT")
        .to_string();
    let first = all.iter().find(|s| s["name"] == "first").expect("first");
    assert_eq!(
        tp,
        format!(
            "00-{}-{}-01",
            trace,
            first["spanId"].as_str().unwrap_or_default()
        )
    );
}

#[test]
fn a_bad_endpoint_is_refused() {
    let sb = Sandbox::new();
    let out = sb.run(&["serve", "--otlp-endpoint", "https://collector:4318"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("must start with http://"),
        "{}",
        text(&out.stderr)
    );
}
