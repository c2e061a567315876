//! `weft serve` nodes, `submit`, `event`, `halt`, delayed and chained plans, driven through
//! real processes on a real SQLite file.

mod common;
use common::{step, text, wait_for, NodeProcess, Sandbox};
use std::process::Stdio;
use std::time::Duration;

fn submit(sb: &Sandbox, args: &[&str]) -> String {
    let mut all = vec!["submit"];
    all.extend_from_slice(args);
    let out = sb.run(&all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "submit failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

fn state_of(sb: &Sandbox, id: &str) -> (String, String) {
    let plan = sb.show(id);
    (
        plan["plan"]["state"].as_str().unwrap_or("").into(),
        plan["result"].as_str().unwrap_or("").into(),
    )
}

fn wait_stopped(sb: &Sandbox, id: &str, limit: Duration) -> String {
    wait_for(&format!("plan {id} to stop"), limit, || {
        let (state, result) = state_of(sb, id);
        (state == "stopped").then_some(result)
    })
}

const GATE: &str = r#"
name = "approval"
[[task]]
name = "build"
run = ["sh", "-c", "echo '{\"artifact\": \"a.tgz\"}'"]
provides = ["artifact"]
[[task]]
name = "approve"
after = ["build"]
wait_for_event = { timeout = "1h" }
provides = ["approver"]
[[task]]
name = "deploy"
requires = ["approver", "artifact"]
run = ["sh", "-c", 'echo "{\"line\": \"$WEFT_IN_ARTIFACT by $WEFT_IN_APPROVER\"}"']
"#;

#[test]
fn a_suspended_plan_is_completed_by_an_event_from_another_process() {
    let sb = Sandbox::new();
    sb.write("gate.toml", GATE);
    let _node = NodeProcess::start(&sb, "n1", &[]);
    let id = submit(&sb, &["gate.toml"]);
    wait_for("approve to wait", Duration::from_secs(20), || {
        (step(&sb.show(&id), "approve")["state"] == "suspended").then_some(())
    });
    let list = text(&sb.run(&["plans", "list"]).stdout);
    assert!(
        list.contains("EXECUTED BY") && list.contains(" n1/"),
        "the list shows which node runs it: {list}"
    );
    let out = sb.run(&[
        "event",
        &id,
        "approve",
        "--data",
        r#"{"approver": "alice"}"#,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(wait_stopped(&sb, &id, Duration::from_secs(20)), "success");
    assert_eq!(
        step(&sb.show(&id), "deploy")["output"]["line"],
        "a.tgz by alice"
    );
}

#[test]
fn a_foreground_run_takes_events_too() {
    let sb = Sandbox::new();
    sb.write("gate.toml", GATE);
    let mut run = sb
        .weft()
        .args(["run", "gate.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let id = wait_for("the gate", Duration::from_secs(20), || {
        let out = sb.run(&["plans", "list", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let id = list[0]["id"].as_str()?.to_string();
        (step(&sb.show(&id), "approve")["state"] == "suspended").then_some(id)
    });
    let out = sb.run(&["event", &id, "approve", "--data", r#"{"approver": "bob"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(run.wait().expect("run ends").code(), Some(0));
}

#[test]
fn bad_events_are_refused_with_the_plan_step_and_state_named() {
    let sb = Sandbox::new();
    sb.write("gate.toml", GATE);
    let _node = NodeProcess::start(&sb, "n1", &[]);
    let id = submit(&sb, &["gate.toml"]);
    wait_for("approve to wait", Duration::from_secs(20), || {
        (step(&sb.show(&id), "approve")["state"] == "suspended").then_some(())
    });
    let cases: [(&[&str], &str); 6] = [
        (&["event", "ffffffff", "approve"], "no plan ffffffff"),
        (
            &["event", &id, "nope"],
            "has no step `nope`; its steps are: build, approve, deploy",
        ),
        (&["event", &id, "build"], "step `build` of plan"),
        (
            &["event", &id, "approve", "--data", "{not json"],
            "--data is not valid JSON",
        ),
        (
            &["event", &id, "approve", "--data", "[1, 2]"],
            "--data must be a JSON object",
        ),
        (
            &["event", &id, "approve", "--data", r#"{"other": 1}"#],
            "the event has no key `approver`",
        ),
    ];
    for (args, want) in cases {
        let out = sb.run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(want),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(
        step(&sb.show(&id), "approve")["state"],
        "suspended",
        "nothing changed"
    );
    assert!(text(&sb.run(&["event", &id, "build"]).stderr).contains("is success, not suspended"));
}

#[test]
fn halt_kills_the_running_commands_and_stops_the_plan() {
    let sb = Sandbox::new();
    sb.write(
        "slow.toml",
        "name = \"slow\"\n[[task]]\nname = \"sleepy\"\nrun = [\"sh\", \"-c\", \"sleep 30 & echo $! > sleepy.pid; wait\"]\n[[task]]\nname = \"next\"\nafter = [\"sleepy\"]\nrun = [\"true\"]\n",
    );
    let _node = NodeProcess::start(&sb, "n1", &[]);
    let id = submit(&sb, &["slow.toml"]);
    let pid = wait_for("the command to start", Duration::from_secs(20), || {
        std::fs::read_to_string(sb.path().join("sleepy.pid"))
            .ok()
            .filter(|p| !p.trim().is_empty())
    });
    let out = sb.run(&["plans", "halt", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = sb.show(&id);
    assert_eq!(plan["plan"]["state"], "stopped");
    assert_eq!(plan["result"], "cancelled");
    assert_eq!(step(&plan, "sleepy")["state"], "cancelled");
    assert_eq!(step(&plan, "next")["state"], "pending");
    let last = plan["history"]
        .as_array()
        .and_then(|h| h.last().cloned())
        .expect("history");
    assert_eq!(
        (last["to"].as_str(), last["data"]["why"].as_str()),
        (Some("stopped"), Some("halted"))
    );
    assert!(
        last["by"].as_str().unwrap_or("").starts_with("n1/"),
        "the node executing it halted it: {last}"
    );
    wait_for(
        "the background sleep to die",
        Duration::from_secs(10),
        || {
            let stat =
                std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
            (stat.is_empty() || stat.split(") ").nth(1).unwrap_or("").starts_with('Z'))
                .then_some(())
        },
    );
    // Halting it again, or resuming it, is bad input.
    let again = sb.run(&["plans", "halt", &id]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("already stopped"),
        "{}",
        text(&again.stderr)
    );
    let resume = sb.run(&["plans", "resume", &id]);
    assert_eq!(resume.status.code(), Some(2));
    assert!(
        text(&resume.stderr).contains("it's stopped"),
        "{}",
        text(&resume.stderr)
    );
}

#[test]
fn a_delayed_plan_starts_within_a_second_of_its_time() {
    let sb = Sandbox::new();
    sb.write("now.toml", "name = \"now\"\n[[task]]\nname = \"stamp\"\nrun = [\"sh\", \"-c\", \"echo {\\\\\\\"at\\\\\\\": $(date +%s%3N)}\"]\n");
    let _node = NodeProcess::start(&sb, "n1", &[]);
    let out = sb.run(&["submit", "now.toml", "--delay", "2s", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let submitted: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = submitted["plan"].as_str().expect("id").to_string();
    let due = common::millis(&submitted["start_at"]).expect("start_at");
    assert_eq!(state_of(&sb, &id).0, "scheduled");
    let list = text(&sb.run(&["plans", "list", "--state", "scheduled"]).stdout);
    assert!(list.contains(&id), "{list}");
    assert_eq!(wait_stopped(&sb, &id, Duration::from_secs(20)), "success");
    let ran_at = step(&sb.show(&id), "stamp")["output"]["at"]
        .as_i64()
        .expect("stamp");
    assert!(ran_at >= due, "started {}ms early", due - ran_at);
    assert!(
        ran_at - due < 1000,
        "started {}ms after its time",
        ran_at - due
    );
}

#[test]
fn a_chained_plan_waits_for_its_prerequisites_and_fails_with_a_failed_one() {
    let sb = Sandbox::new();
    sb.write(
        "ok.toml",
        "name = \"ok\"\n[[task]]\nname = \"a\"\nrun = [\"sleep\", \"0.5\"]\n",
    );
    sb.write(
        "bad.toml",
        "name = \"bad\"\non_error = \"fail\"\n[[task]]\nname = \"a\"\nrun = [\"false\"]\n",
    );
    let _node = NodeProcess::start(&sb, "n1", &[]);
    let first = submit(&sb, &["ok.toml"]);
    let chained = submit(&sb, &["ok.toml", "--after", &first]);
    assert_eq!(state_of(&sb, &chained).0, "scheduled");
    assert_eq!(
        wait_stopped(&sb, &chained, Duration::from_secs(20)),
        "success"
    );
    let first_ended = common::millis(&sb.show(&first)["plan"]["ended_at"]).expect("ended");
    let chained_started =
        common::millis(&sb.show(&chained)["plan"]["started_at"]).expect("started");
    assert!(
        chained_started >= first_ended,
        "the chained plan started before its prerequisite stopped"
    );

    let failing = submit(&sb, &["bad.toml"]);
    let doomed = submit(&sb, &["ok.toml", "--after", &format!("{first},{failing}")]);
    assert_eq!(wait_stopped(&sb, &doomed, Duration::from_secs(20)), "error");
    let plan = sb.show(&doomed);
    assert_eq!(step(&plan, "a")["failure"]["kinds"][0], "failed_dependency");
    let history = plan["history"].as_array().expect("history");
    let stop = history
        .iter()
        .find(|h| h["from"] == "scheduled" && h["to"] == "stopped")
        .expect("stopped");
    assert!(
        stop["data"]["why"]
            .as_str()
            .unwrap_or("")
            .starts_with("failed-dependency"),
        "{stop}"
    );
    assert!(
        stop["by"].as_str().unwrap_or("").starts_with("n1/"),
        "who stopped it: {stop}"
    );
}

#[test]
fn a_plan_whose_node_is_killed_completes_after_a_restart() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path().join("runs")).expect("mkdir");
    let mut flow = String::from("name = \"chain\"\n");
    for i in 0..20 {
        flow.push_str(&format!("[[task]]\nname = \"s{i}\"\nrun = [\"sh\", \"-c\", 'echo ran >> runs/$WEFT_STEP; sleep 0.05']\n"));
        if i > 0 {
            flow.push_str(&format!("after = [\"s{}\"]\n", i - 1));
        }
    }
    sb.write("chain.toml", &flow);
    let ids: Vec<String> = (0..5).map(|_| submit(&sb, &["chain.toml"])).collect();
    let mut node = NodeProcess::start(&sb, "n1", &[]);
    wait_for("some progress", Duration::from_secs(20), || {
        (std::fs::read_dir(sb.path().join("runs"))
            .map(|d| d.count())
            .unwrap_or(0)
            >= 8)
            .then_some(())
    });
    node.sigkill();
    // The same node restarts at once: it finds its previous incarnation's process gone and
    // takes its plans back.
    let _node = NodeProcess::start(&sb, "n1", &[]);
    for id in &ids {
        assert_eq!(wait_stopped(&sb, id, Duration::from_secs(60)), "success");
    }
    for i in 0..20 {
        let runs = std::fs::read_to_string(sb.path().join("runs").join(format!("s{i}")))
            .unwrap_or_default();
        // Five plans share the side-effect file of each step; one re-run per plan at most.
        let n = runs.lines().count();
        assert!((5..=10).contains(&n), "s{i} ran {n} times for 5 plans");
    }
}

#[test]
fn two_nodes_on_one_file_never_run_a_plan_twice() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path().join("runs")).expect("mkdir");
    sb.write(
        "one.toml",
        "name = \"one\"\n[[task]]\nname = \"effect\"\nrun = [\"sh\", \"-c\", 'echo $WEFT_PLAN_ID >> runs/effects; sleep 0.02']\n",
    );
    let ids: Vec<String> = (0..60).map(|_| submit(&sb, &["one.toml"])).collect();
    let _a = NodeProcess::start(&sb, "a", &["--parallelism", "4"]);
    let _b = NodeProcess::start(&sb, "b", &["--parallelism", "4"]);
    for id in &ids {
        assert_eq!(wait_stopped(&sb, id, Duration::from_secs(60)), "success");
    }
    let effects = std::fs::read_to_string(sb.path().join("runs/effects")).expect("effects");
    let mut lines: Vec<&str> = effects.lines().collect();
    assert_eq!(lines.len(), 60, "every plan ran exactly once");
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 60, "no plan ran twice");
}

/// Regression (issue 11): a node restarted at once after a crash was refused for up to a
/// lease ("a node named `n1` is already running"), so a supervisor restarting it failed.
#[test]
fn a_node_restarted_at_once_after_a_crash_takes_over_without_waiting_for_its_lease() {
    let sb = Sandbox::new();
    sb.write(
        "one.toml",
        "name = \"one\"\n[[task]]\nname = \"a\"\nrun = [\"sh\", \"-c\", 'if [ ! -e again ]; then touch again; sleep 30; fi']\n",
    );
    let id = submit(&sb, &["one.toml"]);
    let mut node = NodeProcess::start(&sb, "n1", &["--lease", "60s"]);
    wait_for("the step to start", Duration::from_secs(20), || {
        sb.path().join("again").exists().then_some(())
    });
    node.sigkill();
    let again = NodeProcess::start(&sb, "n1", &["--lease", "60s"]);
    assert_eq!(wait_stopped(&sb, &id, Duration::from_secs(30)), "success");
    assert!(
        again.log().contains("invalidated the previous incarnation"),
        "{}",
        again.log()
    );
}

#[test]
fn a_second_node_with_a_live_name_is_refused() {
    let sb = Sandbox::new();
    let _first = NodeProcess::start(&sb, "same", &[]);
    std::thread::sleep(Duration::from_millis(500));
    let out = sb.run(&["serve", "--name", "same"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("a node named `same` is already running"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sigterm_lets_running_steps_finish_within_the_grace_period() {
    let sb = Sandbox::new();
    sb.write(
        "two.toml",
        "name = \"two\"\n[[task]]\nname = \"first\"\nrun = [\"sh\", \"-c\", \"touch started; sleep 0.5\"]\n[[task]]\nname = \"second\"\nafter = [\"first\"]\nrun = [\"true\"]\n",
    );
    let id = submit(&sb, &["two.toml"]);
    let mut node = NodeProcess::start(&sb, "n1", &[]);
    wait_for("first to start", Duration::from_secs(20), || {
        sb.path().join("started").exists().then_some(())
    });
    assert_eq!(node.sigterm(), Some(0));
    let plan = sb.show(&id);
    assert_eq!(
        step(&plan, "first")["state"],
        "success",
        "the running step finished"
    );
    assert_eq!(
        step(&plan, "second")["state"],
        "pending",
        "nothing new started"
    );
    assert_eq!(plan["plan"]["state"], "running", "left for the next start");
    let _node = NodeProcess::start(&sb, "n1", &[]);
    assert_eq!(wait_stopped(&sb, &id, Duration::from_secs(20)), "success");
}

#[test]
fn a_wait_times_out_even_across_a_node_restart() {
    let sb = Sandbox::new();
    sb.write(
        "t.toml",
        "name = \"t\"\n[[task]]\nname = \"wait\"\nwait_for_event = { timeout = \"3s\" }\n",
    );
    let id = submit(&sb, &["t.toml"]);
    let mut node = NodeProcess::start(&sb, "n1", &[]);
    wait_for("the wait", Duration::from_secs(20), || {
        (step(&sb.show(&id), "wait")["state"] == "suspended").then_some(())
    });
    node.sigkill();
    std::thread::sleep(Duration::from_millis(2100));
    let _node = NodeProcess::start(&sb, "n1", &[]);
    wait_for("the timeout", Duration::from_secs(20), || {
        (step(&sb.show(&id), "wait")["state"] == "error").then_some(())
    });
    let plan = sb.show(&id);
    assert_eq!(
        plan["plan"]["state"], "paused",
        "a node pauses a failed plan (Dynflow's default)"
    );
    assert!(step(&plan, "wait")["failure"]["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("no event arrived within"));
}

#[test]
fn cancel_and_skip_act_on_a_paused_plan() {
    let sb = Sandbox::new();
    sb.write(
        "p.toml",
        "name = \"p\"\non_error = \"pause\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\nrevert = [\"sh\", \"-c\", \"touch a.reverted\"]\n[[task]]\nname = \"b\"\nafter = [\"a\"]\nrun = [\"false\"]\n[[task]]\nname = \"c\"\nafter = [\"b\"]\nrun = [\"true\"]\n[[task]]\nname = \"d\"\nafter = [\"a\"]\nrun = [\"true\"]\n",
    );
    // skip: b and c are skipped, the plan then finishes with a warning.
    assert_eq!(sb.run(&["run", "p.toml"]).status.code(), Some(4));
    let id = sb.last_plan();
    assert_eq!(state_of(&sb, &id).0, "paused");
    let out = sb.run(&["plans", "skip", &id, "b"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = sb.run(&["plans", "resume", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = sb.show(&id);
    assert_eq!(
        (
            step(&plan, "b")["state"].as_str(),
            step(&plan, "c")["state"].as_str()
        ),
        (Some("skipped"), Some("skipped"))
    );
    assert_eq!(plan["result"], "warning");
    // cancel: what completed is reverted; the result is cancelled.
    assert_eq!(sb.run(&["run", "p.toml"]).status.code(), Some(4));
    let id = sb.last_plan();
    let out = sb.run(&["plans", "cancel", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(sb.path().join("a.reverted").exists());
    assert_eq!(
        state_of(&sb, &id),
        ("stopped".to_string(), "cancelled".to_string())
    );
    // Both are refused on a plan that is not paused.
    let out = sb.run(&["plans", "skip", &id, "b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("only a paused plan"),
        "{}",
        text(&out.stderr)
    );
    let out = sb.run(&["plans", "cancel", &id]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_inhibited_plan_is_not_executed() {
    let sb = Sandbox::new();
    sb.write(
        "ok.toml",
        "name = \"ok\"\n[[task]]\nname = \"a\"\nrun = [\"sh\", \"-c\", \"touch ran\"]\n",
    );
    let out = sb.run(&["submit", "ok.toml", "--delay", "1s"]);
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(sb.run(&["plans", "inhibit", &id]).status.code(), Some(0));
    let _node = NodeProcess::start(&sb, "n1", &[]);
    std::thread::sleep(Duration::from_millis(2000));
    assert!(!sb.path().join("ran").exists(), "an inhibited plan ran");
    let out = sb.run(&["plans", "resume", &id]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("it's execution is inhibited"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        state_of(&sb, &id).0,
        "stopped",
        "starting an inhibited plan halts it"
    );
}

#[test]
fn warnings_and_finalize_steps() {
    let sb = Sandbox::new();
    sb.write(
        "w.toml",
        "name = \"w\"\n[[task]]\nname = \"fin2\"\nphase = \"finalize\"\nrun = [\"sh\", \"-c\", \"echo fin2 >> order\"]\n[[task]]\nname = \"fin1\"\nphase = \"finalize\"\nrun = [\"sh\", \"-c\", \"echo fin1 >> order\"]\n[[task]]\nname = \"work\"\nrun = [\"sh\", \"-c\", \"sleep 0.2; echo work >> order; exit 3\"]\nwarn_exit_codes = [3]\n",
    );
    let out = sb.run(&["run", "w.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = sb.show(&sb.last_plan());
    assert_eq!(plan["result"], "warning");
    assert!(step(&plan, "work")["warning"]
        .as_str()
        .unwrap_or("")
        .contains("exited with code 3"));
    let order = std::fs::read_to_string(sb.path().join("order")).expect("order");
    assert_eq!(
        order, "work\nfin2\nfin1\n",
        "finalize steps run after the run phase, one at a time, in plan order"
    );
}

/// The report of the one node in the sandbox, from `weft status --json`.
fn manifolds(sb: &Sandbox) -> serde_json::Value {
    let out = sb.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    nodes[0]["report"]["manifolds"].clone()
}

fn all_started(m: &serde_json::Value) -> bool {
    m.as_object()
        .is_some_and(|o| o.len() == 10 && o.values().all(|v| v["state"] == "started"))
}

#[test]
fn status_shows_the_store_failing_its_dependents_bouncing_and_everything_coming_back() {
    let sb = Sandbox::new();
    sb.write("gate.toml", GATE);
    let _node = NodeProcess::start(&sb, "n1", &[]);
    let id = submit(&sb, &["gate.toml"]);
    wait_for("approve to wait", Duration::from_secs(20), || {
        (step(&sb.show(&id), "approve")["state"] == "suspended").then_some(())
    });
    wait_for("every manifold to start", Duration::from_secs(20), || {
        all_started(&manifolds(&sb)).then_some(())
    });
    let human = text(&sb.run(&["status"]).stdout);
    assert!(
        human.contains("MANIFOLD")
            && human.contains("executor")
            && human.contains("store, executor"),
        "{human}"
    );

    // The database file disappears for a while: no weft command may run meanwhile (it would
    // create a new, empty one).
    let db = sb.db();
    let away = sb.path().join("weft.db.away");
    std::fs::rename(&db, &away).expect("move the database away");
    std::thread::sleep(Duration::from_millis(2500));
    std::fs::rename(&away, &db).expect("bring it back");

    let report = wait_for(
        "every manifold to come back",
        Duration::from_secs(40),
        || {
            let m = manifolds(&sb);
            (all_started(&m) && m["store"]["starts"].as_u64() >= Some(2)).then_some(m)
        },
    );
    let error = report["store"]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("store unreachable") && error.contains("the database file is gone"),
        "{report}"
    );
    assert!(common::millis(&report["store"]["error_at"]).is_some());
    assert!(
        report["executor"]["starts"].as_u64() >= Some(2),
        "the executor was bounced: {report}"
    );
    assert!(
        report["claimer"]["starts"].as_u64() >= Some(2),
        "the claimer was bounced: {report}"
    );
    assert!(
        report["conductor"]["starts"].as_u64() >= Some(2),
        "the conductor was bounced: {report}"
    );

    // No plan was lost: the suspended step still takes its event, and the plan completes once.
    let out = sb.run(&[
        "event",
        &id,
        "approve",
        "--data",
        r#"{"approver": "carol"}"#,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(wait_stopped(&sb, &id, Duration::from_secs(20)), "success");
    let plan = sb.show(&id);
    assert_eq!(
        step(&plan, "build")["attempt"],
        1,
        "a completed step did not run again"
    );
    assert_eq!(step(&plan, "deploy")["attempt"], 1);
}

#[test]
fn submit_wait_and_plans_wait_end_with_the_plans_exit_code_and_values() {
    let sb = Sandbox::new();
    sb.write(
        "ok.toml",
        r#"
name = "ok"
[[task]]
name = "make"
run = ["sh", "-c", "echo '{\"made\": 42}'"]
provides = ["made"]
"#,
    );
    sb.write(
        "bad.toml",
        r#"
name = "bad"
on_error = "fail"
[[task]]
name = "fail"
run = ["false"]
"#,
    );
    let _node = NodeProcess::start(&sb, "waiter", &[]);
    // `submit --wait --json`: one JSON document, with the plan's values.
    let out = sb.run(&["submit", "ok.toml", "--wait", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["result"], "success");
    assert_eq!(doc["values"]["made"], 42);
    // A failing plan: exit 1, from `submit --wait` and from `plans wait` alike.
    let out = sb.run(&["submit", "bad.toml", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let id = text(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let out = sb.run(&["plans", "wait", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("error"), "{}", text(&out.stdout));
}
