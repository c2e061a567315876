//! What `weft serve` logs by default — a line per plan taken up and ended, and per failed step,
//! at `info`, without colours when stderr is a file — and `--log-format json`, `RUST_LOG`,
//! `--quiet`.

mod common;
use common::{text, wait_for, Sandbox};
use std::process::{Child, Stdio};
use std::time::Duration;

const FLOW: &str = r#"
name = "logged"
[[task]]
name = "ok"
run = ["true"]
[[task]]
name = "bad"
after = ["ok"]
run = ["sh", "-c", "echo broken >&2; exit 3"]
"#;

/// `weft serve ARGS` with its stderr in `log`, no log settings from the environment.
fn serve(sb: &Sandbox, log: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    let file = std::fs::File::create(sb.path().join(log)).expect("log");
    let mut c = sb.weft();
    c.env_remove("RUST_LOG")
        .env_remove("WEFT_LOG")
        .envs(env.iter().copied())
        .args(["serve", "--lease", "2s", "--grace", "1s"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(file);
    c.spawn().expect("serve")
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on a child process we spawned.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
}

fn run_one(sb: &Sandbox, log: &str) -> String {
    let out = sb.run(&["submit", "logged.toml", "--wait"]);
    assert_eq!(out.status.code(), Some(4), "paused: {}", text(&out.stderr));
    wait_for("the log lines", Duration::from_secs(10), || {
        let got = std::fs::read_to_string(sb.path().join(log)).unwrap_or_default();
        got.contains("plan ended").then_some(got)
    })
}

#[test]
fn a_node_logs_plans_and_failures_at_info_without_colours() {
    let sb = Sandbox::new();
    sb.write("logged.toml", FLOW);
    let node = serve(&sb, "text.log", &["--name", "a"], &[]);
    let log = run_one(&sb, "text.log");
    stop(node);
    for want in [
        "plan taken up",
        "step failed",
        "exited with code 3",
        "plan ended",
        "INFO",
    ] {
        assert!(log.contains(want), "{want:?} in {log}");
    }
    assert!(
        !log.contains('\u{1b}'),
        "no ANSI escapes in a file: {log:?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_and_quiet_and_rust_log_are_honoured() {
    let sb = Sandbox::new();
    sb.write("logged.toml", FLOW);
    let node = serve(
        &sb,
        "json.log",
        &["--name", "b", "--log-format", "json"],
        &[],
    );
    let log = run_one(&sb, "json.log");
    stop(node);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "plan ended" && l["level"] == "INFO"));

    // --quiet: errors only; RUST_LOG wins over it.
    let node = serve(&sb, "quiet.log", &["--name", "c", "--quiet"], &[]);
    let out = sb.run(&["submit", "logged.toml", "--wait"]);
    assert_eq!(out.status.code(), Some(4));
    stop(node);
    let quiet = std::fs::read_to_string(sb.path().join("quiet.log")).unwrap_or_default();
    assert!(!quiet.contains("plan ended"), "{quiet}");
    let node = serve(
        &sb,
        "rust.log",
        &["--name", "d", "--quiet"],
        &[("RUST_LOG", "weft_engine=info")],
    );
    run_one(&sb, "rust.log");
    stop(node);
}
