//! Groups, end to end: `examples/service.toml` runs a real web server as a prestart sidecar
//! beside a migration, a client, a poststart check and a poststop cleanup. Each task logs
//! timestamped lines; the tests check the lifecycle order, that no process is left behind,
//! that poststop runs after a failure, restarts, and a SIGKILL of weft mid-group.

mod common;
use common::{alive, step, text, Sandbox};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/service.toml")
}

/// `(time, role, event)` lines of the example's log.
fn log(work: &Path) -> Vec<(f64, String, String)> {
    std::fs::read_to_string(work.join("log.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            Some((
                parts.next()?.parse().ok()?,
                parts.next()?.to_string(),
                parts.next()?.to_string(),
            ))
        })
        .collect()
}

/// When `role` first logged an event starting with `event`.
fn first(log: &[(f64, String, String)], role: &str, event: &str) -> f64 {
    log.iter()
        .find(|(_, r, e)| r == role && e.starts_with(event))
        .map(|(t, _, _)| *t)
        .unwrap_or_else(|| panic!("no `{role} {event}` in the log: {log:?}"))
}

fn count(log: &[(f64, String, String)], role: &str, event: &str) -> usize {
    log.iter()
        .filter(|(_, r, e)| r == role && e.starts_with(event))
        .count()
}

/// The pids `role` logged as `start pid=N`.
fn pids(log: &[(f64, String, String)], role: &str) -> Vec<u32> {
    log.iter()
        .filter(|(_, r, _)| r == role)
        .filter_map(|(_, _, e)| e.strip_prefix("start pid=")?.parse().ok())
        .collect()
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The group's task records in `plans show --json`, by name.
fn task<'a>(plan: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    step(plan, "site")["group"]["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no group task {name}: {plan}"))
}

fn run_example(sb: &Sandbox, work: &Path, extra: &[&str]) -> std::process::Output {
    let workdir = format!("workdir={}", work.display());
    let flow = example();
    let mut args = vec!["run", flow.to_str().expect("utf-8 path")];
    args.extend(["--input", &workdir]);
    args.extend(extra);
    sb.run(&args)
}

#[test]
fn the_example_runs_in_lifecycle_order_and_leaves_no_process_behind() {
    let sb = Sandbox::new();
    let work = sb.path().join("work");
    let out = run_example(&sb, &work, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // `weft run` shows the group's tasks as they move.
    let progress = text(&out.stderr);
    for line in [
        "▸ site/server  ready",
        "▸ site/main  success",
        "▸ site/server  stopped",
        "▸ site/cleanup  success",
    ] {
        assert!(progress.contains(line), "no `{line}` in:\n{progress}");
    }
    let log = log(&work);
    // Prestart: the migration finished and the sidecar answered its probe before main began.
    assert!(first(&log, "migrate", "end") < first(&log, "main", "start"));
    assert!(first(&log, "serve", "start") < first(&log, "probe", "ok"));
    assert!(first(&log, "probe", "ok") < first(&log, "main", "start"));
    // Poststop after everything else, the sidecar included.
    let plan = sb.show(&sb.last_plan());
    let server = task(&plan, "server");
    assert_eq!(server["state"], "stopped", "{plan}");
    let main = task(&plan, "main");
    let check = task(&plan, "check");
    let cleanup = task(&plan, "cleanup");
    let at = |t: &serde_json::Value, field: &str| common::millis(&t[field]);
    assert!(at(check, "started_at") >= at(main, "started_at"));
    assert!(at(cleanup, "started_at") >= at(server, "ended_at"));
    assert!(at(cleanup, "started_at") >= at(main, "ended_at"));
    assert!(first(&log, "cleanup", "start") > first(&log, "main", "end"));
    for name in ["migrate", "main", "check", "cleanup"] {
        assert_eq!(task(&plan, name)["state"], "success", "{name}: {plan}");
    }
    // The main task's output reached a later step as `site/main`.
    assert_eq!(
        step(&plan, "report")["output"]["summary"],
        "the server served schema 2"
    );
    // The server is gone.
    let server_pids = pids(&log, "serve");
    assert_eq!(server_pids.len(), 1);
    assert!(!alive(server_pids[0]), "the sidecar outlived its group");
    // `plans show` lists each task with its hook and state.
    let shown = sb.run(&["plans", "show", &sb.last_plan()]);
    let shown = text(&shown.stdout);
    assert!(
        shown.contains("server (prestart sidecar)  stopped"),
        "{shown}"
    );
    assert!(shown.contains("cleanup (poststop)"), "{shown}");
}

#[test]
fn poststop_runs_after_a_main_failure_and_the_sidecar_is_stopped() {
    let sb = Sandbox::new();
    let work = sb.path().join("work");
    let out = run_example(&sb, &work, &["--input", "fail=true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let log = log(&work);
    assert!(first(&log, "cleanup", "end") > first(&log, "main", "fail"));
    assert_eq!(count(&log, "report", ""), 0, "nothing after the group ran");
    let plan = sb.show(&sb.last_plan());
    let site = step(&plan, "site");
    assert_eq!(site["state"], "error");
    let why = site["failure"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("task `main` of group `site` failed"), "{why}");
    assert_eq!(task(&plan, "main")["state"], "error");
    assert_eq!(task(&plan, "server")["state"], "stopped");
    assert_eq!(task(&plan, "cleanup")["state"], "success");
    for pid in pids(&log, "serve") {
        assert!(!alive(pid), "the sidecar outlived its failed group");
    }
}

#[test]
fn sigkill_mid_group_resumes_from_the_right_stage() {
    let sb = Sandbox::new();
    let work = sb.path().join("work");
    let workdir = format!("workdir={}", work.display());
    let spawn = |args: &[&str]| -> Child {
        sb.weft()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn weft")
    };
    let flow = example();
    let flow = flow.to_str().expect("utf-8");
    let mut first_run = spawn(&["run", flow, "--input", &workdir, "--input", "hold=true"]);
    wait_for("main to start", || {
        (count(&log(&work), "main", "start") == 1).then_some(())
    });
    let id = sb.last_plan();
    first_run.kill().expect("SIGKILL weft");
    first_run.wait().expect("reap");
    let before = log(&work);
    let (old_server, old_main) = (pids(&before, "serve")[0], pids(&before, "main")[0]);

    let mut resumed = spawn(&["plans", "resume", &id]);
    // The sidecar died with weft's run (its leftover is killed) and is started again before
    // main continues; the migration, already done, is not run again.
    wait_for("main to start again", || {
        (count(&log(&work), "main", "start") == 2).then_some(())
    });
    assert!(!alive(old_server), "the leftover sidecar was not stopped");
    assert!(!alive(old_main), "the leftover main task was not stopped");
    std::fs::write(work.join("go"), "").expect("let main finish");
    let status = resumed.wait().expect("resume ends");
    assert!(status.success(), "resume failed");

    let log = log(&work);
    assert_eq!(count(&log, "migrate", "start"), 1, "{log:?}");
    assert_eq!(count(&log, "serve", "start"), 2, "{log:?}");
    assert_eq!(count(&log, "cleanup", "start"), 1, "{log:?}");
    let second_server_up = log
        .iter()
        .filter(|(_, r, e)| r == "serve" && e.starts_with("start"))
        .map(|(t, _, _)| *t)
        .nth(1)
        .expect("second server");
    let second_main = log
        .iter()
        .filter(|(_, r, e)| r == "main" && e.starts_with("start"))
        .map(|(t, _, _)| *t)
        .nth(1)
        .expect("second main");
    assert!(second_server_up < second_main);
    for pid in pids(&log, "serve") {
        assert!(!alive(pid), "a sidecar outlived the resumed group");
    }
    let plan = sb.show(&id);
    assert_eq!(plan["plan"]["state"], "stopped");
    assert_eq!(step(&plan, "report")["state"], "success");
}

#[test]
fn a_failed_group_restarts_from_prestart_when_its_policy_allows() {
    let sb = Sandbox::new();
    let flow = sb.write(
        "restart.toml",
        r#"
name = "restart"
[[group]]
name = "g"
restart = { attempts = 2, delay = "50ms" }
[[group.task]]
name = "prepare"
run = ["sh", "-c", "echo prepare >> runs"]
lifecycle = { hook = "prestart" }
[[group.task]]
name = "work"
run = ["sh", "-c", "echo work >> runs; test -e second || { touch second; exit 1; }"]
[[group.task]]
name = "tidy"
run = ["sh", "-c", "echo tidy >> runs"]
lifecycle = { hook = "poststop" }
"#,
    );
    let out = sb.run(&["run", flow.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs = std::fs::read_to_string(sb.path().join("runs")).expect("runs");
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        ["prepare", "work", "prepare", "work", "tidy"],
        "a restart runs the group again from prestart; poststop once, at the end"
    );
    let plan = sb.show(&sb.last_plan());
    assert_eq!(step(&plan, "g")["group"]["restarts"], 1);
}

#[test]
fn a_sidecar_that_dies_while_main_runs_fails_the_group() {
    let sb = Sandbox::new();
    let flow = sb.write(
        "sidecar.toml",
        r#"
name = "sidecar"
[[group]]
name = "g"
[[group.task]]
name = "helper"
run = ["sh", "-c", "sleep 0.3; exit 3"]
lifecycle = { hook = "prestart", sidecar = true }
[[group.task]]
name = "work"
run = ["sleep", "30"]
kill_timeout = "200ms"
[[group.task]]
name = "tidy"
run = ["sh", "-c", "echo tidy >> runs"]
lifecycle = { hook = "poststop" }
"#,
    );
    let started = Instant::now();
    let out = sb.run(&["run", flow.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "main was not stopped"
    );
    let plan = sb.show(&sb.last_plan());
    let why = step(&plan, "g")["failure"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(why.contains("task `helper` of group `g` failed"), "{why}");
    let tasks = step(&plan, "g")["group"]["tasks"].clone();
    assert_eq!(tasks[0]["state"], "error", "{tasks}");
    assert_eq!(tasks[1]["state"], "stopped", "{tasks}");
    assert_eq!(tasks[2]["state"], "success", "{tasks}");
}
