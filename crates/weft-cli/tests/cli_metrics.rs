//! `weft serve --metrics`: a node's Prometheus metrics, scraped over HTTP and read with a real
//! Prometheus parser (the Python client's OpenMetrics parser, Debian's python3-prometheus-client).

mod common;
use common::{text, NodeProcess, Sandbox};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

/// Every sample as `name{labels} value`, as the Prometheus client library's parser reads it.
fn parse(body: &str) -> Vec<String> {
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in f.samples:\n\
        \x20       labels = ','.join('%s=%s' % kv for kv in sorted(s.labels.items()))\n\
        \x20       print('%s{%s} %s' % (s.name, labels, s.value))\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parse");
    assert!(
        out.status.success(),
        "the parser refused it: {}",
        text(&out.stderr)
    );
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn a_node_serves_prometheus_metrics_a_real_parser_reads() {
    let sb = Sandbox::new();
    sb.write(
        "two.toml",
        "name = \"two\"\n[[task]]\nname = \"ok\"\nrun = [\"true\"]\n\
         [[task]]\nname = \"bad\"\nafter = [\"ok\"]\nrun = [\"false\"]\n",
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _node = NodeProcess::start(&sb, "n1", &["--metrics", &addr]);
    for _ in 0..3 {
        let out = sb.run(&["submit", "two.toml", "--wait"]);
        assert_eq!(out.status.code(), Some(4), "paused: {}", text(&out.stderr));
    }
    let response = get(port, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("Content-Type: application/openmetrics-text"));
    let body = response.split("\r\n\r\n").nth(1).expect("a body");
    let samples = parse(body);
    for want in [
        "weft_steps_started_total{flow=two,task=true} 3",
        "weft_steps_finished_total{flow=two,result=success,task=true} 3",
        "weft_steps_finished_total{flow=two,result=error,task=false} 3",
        "weft_step_duration_seconds_count{flow=two} 6",
        "weft_plans_ended_total{result=error,state=paused} 3",
        "weft_steps_running{} 0",
        "weft_plan_claims_total{} 3",
    ] {
        assert!(samples.iter().any(|s| s == want), "{want} in {samples:#?}");
    }
    for prefix in [
        "weft_node_heartbeats_total{} ",
        "weft_manifold_starts{manifold=claimer} ",
        "weft_store_commits_total{} ",
        "weft_nodes_live{} 1",
        "weft_engine_batches_queued{} ",
        "weft_store_commit_duration_seconds_count{} ",
        "weft_store_commit_writes_bucket{le=+Inf} ",
    ] {
        assert!(
            samples.iter().any(|s| s.starts_with(prefix)),
            "{prefix} in {samples:#?}"
        );
    }
    // Plans by state are the node's count of the store, taken every half lease.
    let want = "weft_plans{state=paused} 3";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let response = get(port, "/metrics");
        let body = response.split("\r\n\r\n").nth(1).expect("a body");
        let samples = parse(body);
        if samples.iter().any(|s| s == want) {
            assert!(samples.iter().any(|s| s == "weft_plans{state=running} 0"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{want} in {samples:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(get(port, "/other").starts_with("HTTP/1.1 404"));
}

#[test]
fn an_address_that_cannot_be_bound_is_refused() {
    let sb = Sandbox::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = sb.run(&["serve", "--metrics", &addr]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot listen there"),
        "{}",
        text(&out.stderr)
    );
    let out = sb.run(&["serve", "--metrics", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
}
