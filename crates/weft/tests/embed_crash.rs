//! The README's embedding example (`examples/embed.rs`), killed with SIGKILL mid-task and
//! started again: the new process finishes the plan and awaits its result; what completed is
//! not run again. The example runs in a child process: this test binary re-executed with
//! `EMBED_CHILD` set runs the example's code instead of the tests.

#[path = "../../../examples/embed.rs"]
#[allow(dead_code)]
mod embed;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the example when this binary is its child; does nothing in a normal test run.
#[test]
fn example_child() {
    let Ok(args) = std::env::var("EMBED_CHILD") else {
        return;
    };
    let args: Vec<String> = args.split('\u{1f}').map(String::from).collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if let Err(e) = runtime.block_on(embed::run(&args)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn example(args: &[&str], log: &Path, hold: &Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "example_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("EMBED_CHILD", args.join("\u{1f}"))
        .env("EMBED_LOG", log)
        .env("EMBED_HOLD", hold)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the example")
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn an_application_killed_mid_task_finishes_its_plan_when_started_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db").display().to_string();
    let (log, hold) = (dir.path().join("log"), dir.path().join("hold"));
    std::fs::write(&hold, "").expect("hold file");

    let mut first = example(&[&db, "submit", "https://example.com"], &log, &hold);
    let mut out = BufReader::new(first.stdout.take().expect("stdout"));
    let id = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).expect("read") > 0,
            "the example ended before printing its plan"
        );
        // The test harness may print `test example_child ... ` before it on the same line.
        if let Some((_, id)) = line.trim().split_once("plan ") {
            break id.to_string();
        }
    };
    // Wait until `count` runs (held), then kill the whole application.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lines(&log).contains(&"count".to_string()) {
        assert!(
            Instant::now() < deadline,
            "count never started: {:?}",
            lines(&log)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill().expect("SIGKILL");
    first.wait().expect("reap");
    std::fs::remove_file(&hold).expect("release the hold");

    // Started again, it awaits the plan by id: the plan is taken up and finished.
    let second = example(&[&db, "await", &id], &log, &hold)
        .wait_with_output()
        .expect("second run");
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    let result = stdout
        .lines()
        .find_map(|l| l.split_once("result ").map(|(_, r)| r))
        .expect("a result line");
    let summary: embed::Summary = serde_json::from_str(result).expect("the result's JSON");
    assert_eq!(summary.words, 7);
    assert_eq!(summary.bytes, 46);
    assert!(summary.archived);
    assert_eq!(
        lines(&log),
        vec!["fetch", "count", "count"],
        "fetch ran once; count, interrupted and idempotent, ran again"
    );
}
