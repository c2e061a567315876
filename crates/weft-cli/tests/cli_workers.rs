//! Remote workers from the command line, on a real PostgreSQL with real processes: `weft
//! worker` processes (and the Python worker of examples/) run the remote steps of plans a `weft
//! serve` node executes; a worker SIGKILLed mid-step is lost within its lease and the step is
//! retried on another; reverts go through the workers; bad input is refused.

mod common;
use common::{text, wait_for, NodeProcess, Sandbox};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::process::Command;
use std::time::Duration;

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// A flow of `n` independent remote steps, each appending its worker's pid (the parent of its
/// shell) to `ran`.
fn wide_flow(n: usize) -> String {
    let mut flow = String::from("name = \"wide\"\n[defaults]\nexecutor = \"remote\"\n");
    for i in 0..n {
        let _ = write!(
            flow,
            "[[task]]\nname = \"t{i}\"\nrun = [\"sh\", \"-c\", 'echo $PPID >> ran; echo \"{{\\\"i\\\": {i}}}\"']\n"
        );
    }
    flow
}

/// One slow remote step, retried once; then a local step that fails when `FAIL` exists, so
/// that the remote step is reverted (by a worker) too.
const SLOW: &str = r#"
name = "slow"
on_error = "revert"
[[task]]
name = "slow"
executor = "remote"
retry = { attempts = 2, delay = "100ms" }
run = ["sh", "-c", 'echo $PPID >> slow; sleep 3; echo "{\"done\": true}"']
revert = ["sh", "-c", 'echo $PPID >> reverted']
provides = ["done"]
[[task]]
name = "check"
after = ["slow"]
run = ["sh", "-c", 'test ! -e FAIL']
"#;

fn lines(sb: &Sandbox, file: &str) -> Vec<String> {
    std::fs::read_to_string(sb.path().join(file))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn workers(sb: &Sandbox) -> Vec<serde_json::Value> {
    json(&sb.run(&["workers", "--json"]))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn remote_steps_spread_over_three_workers_survive_a_sigkill_and_revert_through_workers() {
    let sb = Sandbox::with_store(weft_testpg::url());
    let wide = sb.write("wide.toml", &wide_flow(200));
    let slow = sb.write("slow.toml", SLOW);
    let tasks = |flow: &std::path::Path| vec!["--tasks".to_string(), flow.display().to_string()];
    let mut args = tasks(&wide);
    args.extend(tasks(&slow));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut w: Vec<NodeProcess> = ["w1", "w2", "w3"]
        .iter()
        .map(|t| NodeProcess::worker(&sb, t, &args))
        .collect();
    let _node = NodeProcess::start(&sb, "n1", &[]);
    wait_for("three workers", Duration::from_secs(30), || {
        (workers(&sb).len() == 3).then_some(())
    });
    let shown = sb.run(&["status"]);
    assert!(
        text(&shown.stdout).contains("w2"),
        "{}",
        text(&shown.stdout)
    );

    // 200 remote steps: all done, each once, spread over the three workers.
    let out = sb.run(&["submit", "wide.toml", "--wait", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ran = lines(&sb, "ran");
    assert_eq!(ran.len(), 200);
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for pid in ran {
        *per_worker.entry(pid).or_insert(0) += 1;
    }
    assert_eq!(per_worker.len(), 3, "every worker ran some: {per_worker:?}");
    // What a remote command printed is its step's output, in `weft logs`.
    let wide_plan = sb.last_plan();
    wait_for("a remote step's output", Duration::from_secs(10), || {
        let out = sb.run(&["logs", &wide_plan, "t7", "--stream", "stdout"]);
        (text(&out.stdout) == "{\"i\": 7}\n").then_some(())
    });

    // A worker killed mid-step: WorkerLost within its lease, retried on another worker.
    let id = text(&sb.run(&["submit", "slow.toml"]).stdout)
        .trim()
        .to_string();
    let first = wait_for("the slow step to start", Duration::from_secs(30), || {
        lines(&sb, "slow").first().cloned()
    });
    let victim = w
        .iter()
        .position(|p| p.pid().to_string() == first)
        .expect("the step ran in a worker process");
    w[victim].sigkill();
    let end = sb.run(&["plans", "wait", &id, "--json"]);
    assert!(end.status.success(), "{}", text(&end.stderr));
    let ran = lines(&sb, "slow");
    assert_eq!(ran.len(), 2, "ran twice: {ran:?}");
    assert_ne!(ran[0], ran[1], "the retry ran on another worker");
    let shown = sb.show(&id);
    let history = shown["history"].to_string();
    assert!(
        history.contains("the worker at topic") && history.contains("was lost"),
        "{history}"
    );
    assert!(workers(&sb).len() == 2, "the lost worker was forgotten");

    // A failure downstream reverts the remote step on a worker.
    sb.write("FAIL", "");
    let out = sb.run(&["submit", "slow.toml", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let reverted = lines(&sb, "reverted");
    assert_eq!(reverted.len(), 1);
    assert!(
        w.iter().any(|p| p.pid().to_string() == reverted[0]),
        "a worker reverted it"
    );
}

/// The Python worker of examples/ runs beside the Rust one: its tasks' results and failures
/// (TaskFlow's failure dict, with its Python exception) come back to the plan.
#[test]
fn the_python_worker_runs_tasks_and_its_failures_come_back() {
    let sb = Sandbox::with_store(weft_testpg::url());
    // Create the schema first: the Python worker writes into it.
    assert!(sb.run(&["workers"]).status.success());
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/python_worker.py"
    );
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(["--topic", "py"])
        .env("WEFT_DB", sb.url.clone().expect("url"));
    let _py = NodeProcess::spawn_logged(&sb, "python", command);
    sb.write(
        "py.toml",
        "name = \"py\"\n[inputs]\nn = { default = 7 }\n[defaults]\nexecutor = \"remote\"\n\
         [[task]]\nname = \"sq\"\ntask = \"py.square@1\"\nrequires = [\"n\"]\nprovides = [\"squared\"]\n\
         [[task]]\nname = \"local\"\nafter = [\"sq\"]\nrun = [\"true\"]\nexecutor = \"local\"\n",
    );
    sb.write(
        "pyfail.toml",
        "name = \"pyfail\"\n[[task]]\nname = \"f\"\ntask = \"py.fail@1\"\nexecutor = \"remote\"\n",
    );
    wait_for("the python worker", Duration::from_secs(30), || {
        workers(&sb)
            .iter()
            .any(|w| w["topic"] == "py")
            .then_some(())
    });
    let out = sb.run(&["run", "py.toml", "--input", "n:=12", "--json"]);
    let end = json(&out);
    assert_eq!(end["steps"][0]["output"]["squared"], 144, "{end}");
    let out = sb.run(&["run", "pyfail.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let why = text(&out.stdout) + &text(&out.stderr);
    assert!(
        why.contains("asked to fail") && why.contains("ValueError"),
        "{why}"
    );
}

#[test]
fn bad_worker_input_is_refused_with_exit_code_2() {
    let sb = Sandbox::new();
    let flow = sb.write(
        "f.toml",
        "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n",
    );
    let gate = sb.write(
        "gate.toml",
        "name = \"g\"\n[[task]]\nname = \"a\"\nwait_for_event = {}\n",
    );
    let flow = flow.display().to_string();
    let gate = gate.display().to_string();
    let cases: [(&[&str], &str); 5] = [
        (
            &["worker", "--topic", "has space", "--tasks", &flow],
            "invalid worker topic",
        ),
        (
            &["worker", "--topic", "t", "--tasks", "missing.toml"],
            "missing.toml",
        ),
        (
            &["worker", "--topic", "t", "--tasks", &gate],
            "has no command",
        ),
        (
            &[
                "worker", "--topic", "t", "--tasks", &flow, "--lease", "10ms",
            ],
            "too short",
        ),
        (
            &["run", &flow, "--executor", "far"],
            "unknown executor `far`",
        ),
    ];
    for (args, says) in cases {
        let out = sb.run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// A remote step no worker offers waits, and `plans show` says for what.
#[test]
fn plans_show_says_which_remote_step_waits_for_a_worker() {
    let sb = Sandbox::new();
    sb.write(
        "lonely.toml",
        "name = \"lonely\"\n[[task]]\nname = \"a\"\ntask = \"nobody@2\"\nexecutor = \"remote\"\n",
    );
    let _node = NodeProcess::start(&sb, "n1", &[]);
    let id = text(&sb.run(&["submit", "lonely.toml"]).stdout)
        .trim()
        .to_string();
    let said = wait_for("the step to wait", Duration::from_secs(30), || {
        let out = text(&sb.run(&["plans", "show", &id]).stdout);
        out.contains("waiting for a worker").then_some(out)
    });
    assert!(
        said.contains("step a is waiting for a worker that runs `nobody`@2"),
        "{said}"
    );
}
