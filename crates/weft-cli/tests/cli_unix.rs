//! Regression tests for issue 12: the CLI behaves like a Unix tool. A closed pipe panicked,
//! read-only commands created a store where there was none, SIGTERM exited 130, paused and
//! failed plans exited alike, and a foreign SQLite file was changed before being refused.

mod common;
use common::{text, Sandbox};
use std::process::Stdio;

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let sb = Sandbox::new();
    // A plan whose JSON is far larger than a pipe's buffer.
    let mut flow = String::from("name = \"wide\"\n");
    for i in 0..3000 {
        flow.push_str(&format!(
            "[[task]]\nname = \"gate{i}\"\nwait_for_event = {{}}\n"
        ));
    }
    sb.write("wide.toml", &flow);
    let out = sb.run(&["submit", "wide.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut weft = sb
        .weft()
        .args(["plans", "show", &sb.last_plan(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Read ten bytes, then close the pipe.
    let mut head = [0u8; 10];
    use std::io::Read;
    weft.stdout
        .take()
        .expect("stdout")
        .read_exact(&mut head)
        .expect("read");
    let out = weft.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(141));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn read_only_commands_find_no_store_and_create_none() {
    let sb = Sandbox::new();
    for args in [
        vec!["plans", "list"],
        vec!["plans", "show", "0"],
        vec!["status"],
    ] {
        let out = sb.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("there is no weft store at"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let left: Vec<_> = std::fs::read_dir(sb.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "created {left:?}");
}

#[test]
fn sigterm_exits_143_and_sigint_130() {
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let sb = Sandbox::new();
        sb.write(
            "long.toml",
            "name = \"long\"\n[[task]]\nname = \"wait\"\nrun = [\"sh\", \"-c\", 'touch started; sleep 30']\n",
        );
        let mut child = sb
            .weft()
            .args(["run", "long.toml"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        common::wait_for("the step", std::time::Duration::from_secs(30), || {
            sb.path().join("started").exists().then_some(())
        });
        // SAFETY: kill(2) on a child process we spawned.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(child.wait().expect("wait").code(), Some(code));
    }
}

#[test]
fn a_paused_plan_and_a_failed_plan_exit_differently() {
    let sb = Sandbox::new();
    sb.write(
        "fail.toml",
        "name = \"f\"\non_error = \"fail\"\n[[task]]\nname = \"a\"\nrun = [\"false\"]\n",
    );
    sb.write(
        "pause.toml",
        "name = \"p\"\non_error = \"pause\"\n[[task]]\nname = \"a\"\nrun = [\"false\"]\n",
    );
    assert_eq!(sb.run(&["run", "fail.toml"]).status.code(), Some(1));
    assert_eq!(sb.run(&["run", "pause.toml"]).status.code(), Some(4));
}

#[test]
fn a_foreign_sqlite_file_is_refused_unchanged() {
    let sb = Sandbox::new();
    let path = sb.path().join("other.db");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('create table notes (x)'); c.commit()",
        ])
        .arg(&path)
        .status()
        .expect("python3");
    assert!(status.success());
    let before = std::fs::read(&path).expect("read");
    let out = sb
        .weft()
        .args(["plans", "list"])
        .env("WEFT_DB", &path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not a weft database"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "the file changed"
    );
    assert!(!sb.path().join("other.db-wal").exists());

    sb.write(
        "x.toml",
        "name = \"x\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n",
    );
    let out = sb
        .weft()
        .args(["run", "x.toml"])
        .env("WEFT_DB", "/dev/null")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/dev/null is not a weft database"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn under_json_errors_are_json_and_times_are_rfc3339() {
    let sb = Sandbox::new();
    sb.write(
        "ok.toml",
        "name = \"ok\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n",
    );
    assert_eq!(sb.run(&["run", "ok.toml"]).status.code(), Some(0));
    let out = sb.run(&["plans", "show", "nope", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON on stderr");
    assert_eq!(error["error"]["kind"], "input");
    assert_eq!(error["error"]["exit_code"], 2);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("no plan nope"));

    let out = sb.run(&["plans", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let created = list[0]["created_at"].as_str().expect("a string");
    assert!(
        created.len() == 24 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
    assert!(common::millis(&list[0]["created_at"]).is_some());
}
