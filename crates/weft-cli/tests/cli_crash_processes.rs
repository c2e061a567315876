//! Regression tests for issue 11: a task's processes outlived a SIGKILLed `weft run` or node,
//! so a resumed plan ran a step twice at once, and a non-idempotent step that weft recorded as
//! "not re-run" completed its effect anyway. Now the reaper kills every task's process group
//! when its runner dies, and whoever takes the plan over kills what is left before anything
//! runs again.

mod common;
use common::{alive, children, comm, pids_in, step, text, wait_for, NodeProcess, Sandbox};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A task that records its own pid and a background child's, then works for `secs`.
fn flow(idempotent: bool, secs: u32) -> String {
    format!(
        "name = \"charge\"\n[[task]]\nname = \"charge\"\nidempotent = {idempotent}\nrun = [\"sh\", \"-c\", 'echo $$ >> pids; sleep 60 & echo $! >> pids; echo start >> log; sleep {secs}; echo charged >> log']\n"
    )
}

fn spawn(sb: &Sandbox, args: &[&str]) -> Child {
    sb.weft()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn weft")
}

fn lines(sb: &Sandbox, name: &str, what: &str) -> usize {
    std::fs::read_to_string(sb.path().join(name))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == what)
        .count()
}

/// Waits until the task's two processes have written their pids and the task its `start`
/// (killed between the two, the first run would leave no `start` behind: a race, not a bug).
fn task_pids(sb: &Sandbox) -> Vec<u32> {
    wait_for("the task to start", Duration::from_secs(30), || {
        let pids = pids_in(sb, "pids");
        (pids.len() >= 2 && lines(sb, "log", "start") >= 1).then_some(pids)
    })
}

/// Runs `charge.toml` (written from `flow`), SIGKILLs weft once its task runs, and checks
/// that the task's processes die with it; returns the plan's id.
fn run_and_sigkill(sb: &Sandbox, flow: &str) -> String {
    sb.write("charge.toml", flow);
    let mut child = spawn(sb, &["run", "charge.toml"]);
    let pids = task_pids(sb);
    child.kill().expect("SIGKILL weft");
    child.wait().expect("reap");
    all_die_within_a_second(&pids);
    sb.last_plan()
}

/// Asserts that every one of `pids` is gone within a second.
fn all_die_within_a_second(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "task processes outlived their runner by a second: {:?}",
            pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_sigkilled_run_takes_its_task_processes_with_it_and_resume_runs_the_step_once_more() {
    let sb = Sandbox::new();
    let id = run_and_sigkill(&sb, &flow(true, 3));
    let out = sb.run(&["plans", "resume", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(lines(&sb, "log", "start"), 2, "the idempotent step re-ran");
    assert_eq!(lines(&sb, "log", "charged"), 1, "but only one run finished");
}

#[test]
fn a_non_idempotent_step_of_a_sigkilled_run_never_completes_its_effect() {
    let sb = Sandbox::new();
    let id = run_and_sigkill(&sb, &flow(false, 2));
    let out = sb.run(&["plans", "resume", &id]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let plan = sb.show(&id);
    assert_eq!(plan["plan"]["state"], "paused");
    assert!(step(&plan, "charge")["failure"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("abnormal termination"));
    assert_eq!(lines(&sb, "log", "charged"), 0, "the orphan did not finish");

    // The operator resumes, as the README says: the effect happens exactly once.
    let out = sb.run(&["plans", "resume", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(lines(&sb, "log", "charged"), 1);
}

#[test]
fn resume_kills_what_a_dead_run_left_when_its_reaper_died_too() {
    let sb = Sandbox::new();
    sb.write("charge.toml", &flow(true, 3));
    let mut child = spawn(&sb, &["run", "charge.toml"]);
    let pids = task_pids(&sb);
    // Kill the reaper first, then weft: nothing is left to kill the task at once.
    let reaper = children(child.id())
        .into_iter()
        .find(|&p| comm(p) == "weft-reaper")
        .expect("weft run has a reaper child");
    // SAFETY: kill(2) on a process this test found as its child's child.
    unsafe { libc::kill(reaper as libc::pid_t, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(50));
    child.kill().expect("SIGKILL weft");
    child.wait().expect("reap");
    assert!(pids.iter().all(|&p| alive(p)), "the leftovers live on");

    let id = sb.last_plan();
    let out = sb.run(&["plans", "resume", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(pids.iter().all(|&p| !alive(p)), "resume killed them first");
    assert_eq!(lines(&sb, "log", "start"), 2);
    assert_eq!(
        lines(&sb, "log", "charged"),
        1,
        "the leftover never finished"
    );
}

#[test]
fn a_sigkilled_node_takes_its_task_processes_with_it() {
    let sb = Sandbox::new();
    sb.write("charge.toml", &flow(true, 3));
    let mut node = NodeProcess::start(&sb, "n1", &[]);
    let out = sb.run(&["submit", "charge.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pids = task_pids(&sb);
    node.sigkill();
    all_die_within_a_second(&pids);

    // Its next incarnation finishes the plan, the step run once more and finished once.
    let _node = NodeProcess::start(&sb, "n1", &[]);
    let id = sb.last_plan();
    wait_for("the plan to finish", Duration::from_secs(30), || {
        (sb.show(&id)["plan"]["state"] == "stopped").then_some(())
    });
    assert_eq!(sb.show(&id)["result"], "success");
    assert_eq!(lines(&sb, "log", "start"), 2);
    assert_eq!(lines(&sb, "log", "charged"), 1);
}

#[test]
fn a_step_does_not_wait_for_a_background_child_holding_its_output() {
    let sb = Sandbox::new();
    sb.write(
        "bg.toml",
        "name = \"bg\"\n[[task]]\nname = \"bg\"\nrun = [\"sh\", \"-c\", 'sleep 20 & echo $! > bg.pid; echo \"{\\\"ok\\\": 1}\"']\nprovides = [\"ok\"]\n",
    );
    let started = Instant::now();
    let out = sb.run(&["run", "bg.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?} for a background child",
        started.elapsed()
    );
    let pid = pids_in(&sb, "bg.pid");
    assert!(
        pid.iter().all(|&p| !alive(p)),
        "the background child was killed with the step"
    );
}
