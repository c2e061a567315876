//! The HTTP side tested by outside tools against a real node: schemathesis generates requests
//! from the OpenAPI document (no server errors; statuses, content types and bodies as
//! documented), Playwright drives the dashboard in Debian's Chromium, and
//! `examples/python_client.py` drives a plan over HTTP. scripts/test.sh installs the tools
//! (a Python virtual environment in target/pytools, and Chromium).

mod common;
use common::{http, http_port, text, wait_for, NodeProcess, Sandbox, APPROVAL};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The virtual environment's program `name` (python3, st).
fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("WEFT_TEST_PYTOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/pytools"));
    let path = dir.join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: scripts/test.sh installs the test tools (schemathesis, playwright)",
        path.display()
    );
    path
}

fn submit(port: u16, who: &str) -> String {
    let body = json!({"flow": APPROVAL, "inputs": {"who": who}}).to_string();
    let r = http(
        port,
        "POST",
        "/api/plans",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", text(&r.body));
    r.json()["id"].as_str().expect("an id").to_string()
}

fn artefacts() -> PathBuf {
    let dir = workspace().join("target/test-artefacts");
    std::fs::create_dir_all(&dir).expect("artefacts dir");
    dir
}

#[test]
fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let sb = Sandbox::new();
    let node = NodeProcess::start(&sb, "n1", &["--http", "127.0.0.1:0"]);
    let port = http_port(&node);
    // A plan for the generated requests to find (ids are prefixes: `0` matches it).
    submit(port, "schemathesis");
    let out = Command::new(tool("st"))
        .current_dir(sb.path())
        .args([
            "run",
            &format!("http://127.0.0.1:{port}/openapi.json"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-time",
            "40",
            "--workers",
            "2",
            "--seed",
            "1",
            "--no-color",
        ])
        .output()
        .expect("run schemathesis");
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(!node.log().contains("panicked"), "{}", node.log());
}

#[test]
fn the_dashboard_in_a_real_browser_follows_a_plan_and_sends_its_event() {
    let sb = Sandbox::new();
    let node = NodeProcess::start(&sb, "n1", &["--http", "127.0.0.1:0"]);
    let port = http_port(&node);
    let plan = submit(port, "browser");
    wait_for("the gate to wait", Duration::from_secs(20), || {
        let p = http(port, "GET", &format!("/api/plans/{plan}"), &[], b"").json();
        (p["steps"][1]["state"] == "suspended").then_some(())
    });
    let script = workspace().join("crates/weft-cli/tests/browser/dashboard.py");
    let out = Command::new(tool("python3"))
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(&plan)
        .arg(artefacts())
        .output()
        .expect("run the browser test");
    assert!(
        out.status.success(),
        "the browser test failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for shot in [
        "dashboard-plans.png",
        "dashboard-plan-done.png",
        "dashboard-step.png",
    ] {
        assert!(artefacts().join(shot).exists(), "{shot} saved");
    }
}

#[test]
fn the_python_client_example_drives_a_plan_over_http() {
    let sb = Sandbox::new();
    let node = NodeProcess::start(&sb, "n1", &["--http", "127.0.0.1:0"]);
    let port = http_port(&node);
    let out = Command::new("python3")
        .arg(workspace().join("examples/python_client.py"))
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(workspace().join("examples/approval.toml"))
        .output()
        .expect("run examples/python_client.py");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("sending the event to approve"), "{stdout}");
    assert!(stdout.contains("plan stopped warning"), "{stdout}");
    assert!(
        stdout.contains("approved by python"),
        "the deploy step's output, read back: {stdout}"
    );
}
