//! `weft run` end to end: real processes, a real SQLite file.

mod common;
use common::{step, text, Sandbox};

#[test]
fn data_flows_through_a_diamond() {
    let sb = Sandbox::new();
    sb.write(
        "diamond.toml",
        r#"
name = "diamond"
[inputs]
base = { required = true }
[[task]]
name = "top"
requires = ["base"]
provides = ["n"]
run = ["sh", "-c", 'echo "noise"; echo "{\"n\": $WEFT_IN_BASE}"']
[[task]]
name = "left"
requires = ["n"]
provides = ["l"]
run = ["sh", "-c", 'echo "{\"l\": $(($WEFT_IN_N + 1))}"']
[[task]]
name = "right"
requires = ["n"]
provides = ["r"]
run = ["sh", "-c", 'read -r stdin; echo "{\"r\": $(($WEFT_IN_N * 10)), \"stdin\": $stdin}"']
[[task]]
name = "bottom"
requires = ["l", "r"]
provides = ["sum"]
run = ["sh", "-c", 'echo "{\"sum\": $(($WEFT_IN_L + $WEFT_IN_R)), \"step\": \"$WEFT_STEP\", \"attempt\": $WEFT_ATTEMPT}"']
"#,
    );
    let out = sb.run(&["run", "diamond.toml", "--input", "base=4"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let plan = sb.show(&sb.last_plan());
    assert_eq!(plan["result"], "success");
    assert_eq!(step(&plan, "left")["output"]["l"], 5);
    assert_eq!(
        step(&plan, "right")["output"]["stdin"],
        serde_json::json!({"n": 4}),
        "inputs arrive on stdin"
    );
    assert_eq!(step(&plan, "bottom")["output"]["sum"], 45);
    assert_eq!(step(&plan, "bottom")["output"]["step"], "bottom");
    assert_eq!(step(&plan, "bottom")["output"]["attempt"], 1);
}

#[test]
fn parallel_branches_overlap_in_time() {
    let sb = Sandbox::new();
    let branch = |name: &str| {
        format!(
            "[[task]]\nname = \"{name}\"\nrun = [\"sh\", \"-c\", 's=$(date +%s%N); sleep 0.6; echo \"{{\\\"start\\\": $s, \\\"end\\\": $(date +%s%N)}}\"']\n"
        )
    };
    sb.write(
        "par.toml",
        &format!("name = \"par\"\n{}{}", branch("a"), branch("b")),
    );
    let out = sb.run(&["run", "par.toml"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let plan = sb.show(&sb.last_plan());
    let (a, b) = (&step(&plan, "a")["output"], &step(&plan, "b")["output"]);
    let (a0, a1, b0, b1) = (
        a["start"].as_i64(),
        a["end"].as_i64(),
        b["start"].as_i64(),
        b["end"].as_i64(),
    );
    let (a0, a1, b0, b1) = (
        a0.expect("a start"),
        a1.expect("a end"),
        b0.expect("b start"),
        b1.expect("b end"),
    );
    assert!(
        a0 < b1 && b0 < a1,
        "a [{a0}, {a1}] and b [{b0}, {b1}] should overlap"
    );
}

#[test]
fn parallelism_one_runs_branches_one_at_a_time() {
    let sb = Sandbox::new();
    let branch = |name: &str| {
        format!(
            "[[task]]\nname = \"{name}\"\nrun = [\"sh\", \"-c\", 's=$(date +%s%N); sleep 0.2; echo \"{{\\\"start\\\": $s, \\\"end\\\": $(date +%s%N)}}\"']\n"
        )
    };
    sb.write(
        "par.toml",
        &format!("name = \"par\"\n{}{}", branch("a"), branch("b")),
    );
    let out = sb.run(&["run", "par.toml", "--parallelism", "1"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let plan = sb.show(&sb.last_plan());
    let (a, b) = (&step(&plan, "a")["output"], &step(&plan, "b")["output"]);
    let disjoint =
        a["end"].as_i64() <= b["start"].as_i64() || b["end"].as_i64() <= a["start"].as_i64();
    assert!(
        disjoint,
        "with --parallelism 1 the branches must not overlap: {a} {b}"
    );
}

#[test]
fn a_failing_task_is_retried_with_its_backoff() {
    let sb = Sandbox::new();
    sb.write(
        "retry.toml",
        r#"
name = "retry"
[[task]]
name = "flaky"
run = ["sh", "-c", 'if [ "$WEFT_ATTEMPT" -lt 3 ]; then echo "attempt $WEFT_ATTEMPT fails" >&2; exit 1; fi; echo "{\"ok\": true}"']
retry = { attempts = 3, backoff = "fixed", delay = "300ms" }
"#,
    );
    let out = sb.run(&["run", "retry.toml"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let plan = sb.show(&sb.last_plan());
    assert_eq!(step(&plan, "flaky")["attempt"], 3);
    // The history shows each error followed, after the delay, by the next attempt.
    let history = plan["history"].as_array().expect("history");
    let at = |from: &str, to: &str, nth: usize| {
        history
            .iter()
            .filter(|h| h["step"] == 0 && h["from"] == from && h["to"] == to)
            .nth(nth)
            .and_then(|h| common::millis(&h["at"]))
            .expect("transition in history")
    };
    for n in 0..2 {
        let gap = at("error", "running", n) - at("running", "error", n);
        assert!(
            gap >= 290,
            "retry {n} came after {gap}ms, before its 300ms delay"
        );
    }
}

#[test]
fn exhausted_retries_fail_the_plan_with_exit_code_1_and_the_stderr_tail() {
    let sb = Sandbox::new();
    sb.write(
        "fail.toml",
        "name = \"fail\"\n[[task]]\nname = \"bad\"\nrun = [\"sh\", \"-c\", \"echo oops >&2; exit 7\"]\nretry = { attempts = 2, delay = \"10ms\" }\n",
    );
    let out = sb.run(&["run", "fail.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("`sh` exited with code 7"),
        "{}",
        text(&out.stdout)
    );
    let plan = sb.show(&sb.last_plan());
    assert_eq!(plan["result"], "error");
    assert_eq!(plan["plan"]["state"], "stopped");
    let failure = &step(&plan, "bad")["failure"];
    assert_eq!(failure["exit_code"], 7);
    assert_eq!(failure["stderr_tail"], "oops\n");
    assert_eq!(step(&plan, "bad")["attempt"], 2);
}

#[test]
fn a_failure_reverts_completed_steps_in_reverse_dependency_order() {
    let sb = Sandbox::new();
    sb.write(
        "rev.toml",
        r#"
name = "rev"
[defaults]
env = { LOG = "revert.log" }
[[task]]
name = "a"
provides = ["x"]
run = ["sh", "-c", 'echo "{\"x\": 1}"']
revert = ["sh", "-c", 'echo "a $WEFT_RESULT" >> "$LOG"']
[[task]]
name = "b"
requires = ["x"]
run = ["sh", "-c", 'sleep 0.1']
revert = ["sh", "-c", 'echo "b" >> "$LOG"']
[[task]]
name = "c"
requires = ["x"]
run = ["true"]
[[task]]
name = "d"
after = ["b", "c"]
run = ["sh", "-c", 'exit 1']
[[task]]
name = "never"
after = ["d"]
run = ["sh", "-c", 'echo never >> never.log']
revert = ["sh", "-c", 'echo "never reverted" >> "$LOG"']
[[task]]
name = "cause"
after = ["b", "c"]
run = ["sh", "-c", 'sleep 0.3; echo "{\"done\": 1}"']
revert = ["sh", "-c", 'echo "cause $WEFT_FAILURE" >> "$LOG"']
"#,
    );
    let out = sb.run(&["run", "rev.toml"]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let log = std::fs::read_to_string(sb.path().join("revert.log")).expect("reverts ran");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[0].starts_with("cause {") && lines[0].contains("exited with code 1"),
        "{log}"
    );
    assert_eq!(lines[1], "b", "{log}");
    assert_eq!(lines[2], "a {\"x\":1}", "{log}");
    assert!(
        !sb.path().join("never.log").exists(),
        "no new step starts after a failure"
    );
    let plan = sb.show(&sb.last_plan());
    assert_eq!(plan["result"], "error");
    for (name, state) in [
        ("a", "reverted"),
        ("b", "reverted"),
        ("c", "reverted"),
        ("d", "error"),
        ("never", "pending"),
        ("cause", "reverted"),
    ] {
        assert_eq!(step(&plan, name)["state"], state, "{name}");
    }
}

#[test]
fn a_failing_revert_pauses_the_plan() {
    let sb = Sandbox::new();
    sb.write(
        "rf.toml",
        "name = \"rf\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\nrevert = [\"sh\", \"-c\", \"echo cannot undo >&2; exit 2\"]\n[[task]]\nname = \"b\"\nafter = [\"a\"]\nrun = [\"false\"]\n",
    );
    let out = sb.run(&["run", "rf.toml"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stdout).contains("paused"),
        "{}",
        text(&out.stdout)
    );
    let plan = sb.show(&sb.last_plan());
    assert_eq!(plan["plan"]["state"], "paused");
    assert_eq!(step(&plan, "a")["state"], "revert_failed");
    assert_eq!(step(&plan, "a")["failure"]["stderr_tail"], "cannot undo\n");
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let sb = Sandbox::new();
    sb.write(
        "slow.toml",
        "name = \"slow\"\n[[task]]\nname = \"slow\"\ntimeout = \"500ms\"\nrun = [\"sh\", \"-c\", \"sleep 30 & echo $! > child.pid; wait\"]\n",
    );
    let started = std::time::Instant::now();
    let out = sb.run(&["run", "slow.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the run waited for the sleep"
    );
    let plan = sb.show(&sb.last_plan());
    let failure = &step(&plan, "slow")["failure"];
    assert!(
        failure["message"]
            .as_str()
            .unwrap_or("")
            .contains("timed out after 500ms"),
        "{failure}"
    );
    assert_eq!(failure["kinds"][0], "timeout");
    let pid = std::fs::read_to_string(sb.path().join("child.pid")).expect("child pid");
    let pid = pid.trim();
    // The grandchild is gone (or a zombie waiting to be reaped by init).
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false);
    assert!(!alive, "the background sleep {pid} survived the timeout");
}

#[test]
fn a_missing_provided_key_fails_the_step_naming_it() {
    let sb = Sandbox::new();
    sb.write(
        "prov.toml",
        "name = \"prov\"\n[[task]]\nname = \"a\"\nprovides = [\"token\"]\nrun = [\"sh\", \"-c\", \"echo '{\\\"other\\\": 1}'\"]\n",
    );
    let out = sb.run(&["run", "prov.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let plan = sb.show(&sb.last_plan());
    assert_eq!(
        step(&plan, "a")["failure"]["message"],
        "output has no key `token`, which the task provides"
    );
}

#[test]
fn subflow_steps_appear_under_their_parent() {
    let sb = Sandbox::new();
    sb.write("inner.toml", "name = \"inner\"\n[[task]]\nname = \"x\"\nprovides = [\"v\"]\nrun = [\"sh\", \"-c\", \"echo '{\\\"v\\\": 3}'\"]\n");
    sb.write(
        "outer.toml",
        "name = \"outer\"\n[[task]]\nname = \"sub\"\nflow = \"inner.toml\"\n[[task]]\nname = \"after\"\nrequires = [\"v\"]\nprovides = [\"w\"]\nrun = [\"sh\", \"-c\", \"echo {\\\\\\\"w\\\\\\\": $WEFT_IN_V}\"]\n",
    );
    let out = sb.run(&["run", "outer.toml"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let plan = sb.show(&sb.last_plan());
    assert_eq!(step(&plan, "sub/x")["state"], "success");
    assert_eq!(step(&plan, "after")["output"]["w"], 3);
}

#[test]
fn plans_list_filters_by_state_and_prints_json() {
    let sb = Sandbox::new();
    sb.write(
        "ok.toml",
        "name = \"ok\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n",
    );
    sb.write("bad.toml", "name = \"bad\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\nrevert = [\"false\"]\n[[task]]\nname = \"b\"\nafter = [\"a\"]\nrun = [\"false\"]\n");
    assert_eq!(sb.run(&["run", "ok.toml"]).status.code(), Some(0));
    assert_eq!(sb.run(&["run", "bad.toml"]).status.code(), Some(4));
    let out = sb.run(&["plans", "list", "--state", "paused", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["flow"], "bad");
    let human = text(&sb.run(&["plans", "list"]).stdout);
    assert!(human.starts_with("ID"), "{human}");
    assert!(
        human.contains("paused") && human.contains("stopped"),
        "{human}"
    );
    let bad_state = sb.run(&["plans", "list", "--state", "exploded"]);
    assert_eq!(bad_state.status.code(), Some(2));
    assert!(text(&bad_state.stderr).contains("unknown plan state `exploded`"));
}

/// Regression (issue 12): after `weft run` everything sat in `weft.db-wal`; a user who copied
/// only `weft.db` got nothing. Now a run ends with a checkpoint, and `weft backup` copies a
/// store in use.
#[test]
fn a_finished_run_leaves_a_whole_database_file_and_backup_copies_it() {
    let sb = Sandbox::new();
    sb.write(
        "ok.toml",
        "name = \"ok\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n",
    );
    assert_eq!(sb.run(&["run", "ok.toml"]).status.code(), Some(0));
    let id = sb.last_plan();
    // Only the main file, copied elsewhere.
    let copy = tempfile::tempdir().expect("tempdir");
    std::fs::copy(sb.db(), copy.path().join("weft.db")).expect("copy");
    let out = sb
        .weft()
        .args(["plans", "show", &id, "--json"])
        .env("WEFT_DB", copy.path().join("weft.db"))
        .output()
        .expect("show");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let backup = copy.path().join("backup.db");
    let out = sb.run(&["backup", backup.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = sb
        .weft()
        .args(["plans", "show", &id, "--json"])
        .env("WEFT_DB", &backup)
        .output()
        .expect("show");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A backup never overwrites.
    let out = sb.run(&["backup", backup.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("exists already"),
        "{}",
        text(&out.stderr)
    );
}

/// Regression (issue 12): a timeout SIGKILLed a command at once. Now it gets SIGTERM and its
/// `kill_timeout` to clean up; one that ignores SIGTERM is killed when the grace is over.
#[test]
fn a_timeout_sends_sigterm_then_sigkill_after_the_kill_timeout() {
    let sb = Sandbox::new();
    sb.write(
        "t.toml",
        "name = \"t\"\non_error = \"fail\"\n[[task]]\nname = \"polite\"\ntimeout = \"300ms\"\nrun = [\"sh\", \"-c\", 'trap \"echo cleaned > cleaned; exit 0\" TERM; while :; do sleep 0.05; done']\n[[task]]\nname = \"stubborn\"\ntimeout = \"300ms\"\nkill_timeout = \"300ms\"\nrun = [\"sh\", \"-c\", 'trap \"\" TERM; echo $$ > stubborn.pid; while :; do sleep 0.05; done']\n",
    );
    let out = sb.run(&["run", "t.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(sb.path().join("cleaned"))
            .expect("the trap ran")
            .trim(),
        "cleaned"
    );
    let plan = sb.show(&sb.last_plan());
    let polite = step(&plan, "polite")["failure"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        polite.contains("timed out after 300ms; its process group was stopped with SIGTERM"),
        "{polite}"
    );
    let stubborn = step(&plan, "stubborn")["failure"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        stubborn.contains("killed: it was still running 300ms after SIGTERM"),
        "{stubborn}"
    );
}

#[test]
fn a_start_time_with_an_offset_or_a_zone_is_read_as_such() {
    let sb = Sandbox::new();
    sb.write(
        "f.toml",
        "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n",
    );
    for (at, utc) in [
        ("2099-07-01 10:00 Europe/Berlin", "2099-07-01T08:00:00.000Z"),
        ("2099-01-01T10:00:00+02:00", "2099-01-01T08:00:00.000Z"),
        ("2099-01-01 08:00", "2099-01-01T08:00:00.000Z"),
    ] {
        let out = sb.run(&["submit", "f.toml", "--at", at, "--json"]);
        assert!(out.status.success(), "{at}: {}", text(&out.stderr));
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(answer["start_at"], utc, "{at}");
    }
    let out = sb.run(&[
        "submit",
        "f.toml",
        "--at",
        "2020-01-01 00:00",
        "--allow-past",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_rerun_from_a_step_copies_what_came_before_and_runs_the_rest_again() {
    let sb = Sandbox::new();
    sb.write(
        "chain.toml",
        r#"
name = "chain"
[[task]]
name = "a"
provides = ["token"]
run = ["sh", "-c", "echo a >> ran.txt; echo \"{\\\"token\\\": \\\"$(date +%s%N)\\\"}\""]
[[task]]
name = "b"
requires = ["token"]
run = ["sh", "-c", "echo b >> ran.txt; echo \"{\\\"seen\\\": \\\"$WEFT_IN_TOKEN\\\"}\""]
[[task]]
name = "c"
after = ["b"]
run = ["sh", "-c", "echo c >> ran.txt"]
[[task]]
name = "d"
run = ["sh", "-c", "echo d >> ran.txt"]
"#,
    );
    let out = sb.run(&["run", "chain.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let original = sb.last_plan();
    let first = sb.show(&original);
    let token = step(&first, "a")["output"]["token"].clone();
    let out = sb.run(&["plans", "rerun", &original[..13], "--from", "b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rerun = sb.last_plan();
    assert_ne!(rerun, original);
    let plan = sb.show(&rerun);
    assert_eq!(plan["result"], "success");
    assert_eq!(
        step(&plan, "a")["output"]["token"],
        token,
        "a's output copied"
    );
    assert_eq!(
        step(&plan, "b")["output"]["seen"],
        token,
        "b ran again on the copy"
    );
    let mut ran: Vec<String> = std::fs::read_to_string(sb.path().join("ran.txt"))
        .expect("ran.txt")
        .lines()
        .map(str::to_string)
        .collect();
    ran.sort();
    assert_eq!(
        ran,
        ["a", "b", "b", "c", "c", "d"],
        "only b and c ran again"
    );
    // The copies say where they came from; b's history starts afresh.
    let history = plan["history"].as_array().expect("history");
    let by = |name: &str| -> Vec<String> {
        let index = plan["plan"]["flow"]["steps"]
            .as_array()
            .and_then(|s| s.iter().position(|s| s["name"] == name))
            .expect("a step");
        history
            .iter()
            .filter(|h| h["step"] == index)
            .map(|h| h["by"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert!(
        by("a")
            .iter()
            .all(|b| b == &format!("copied from plan {original}")),
        "{:?}",
        by("a")
    );
    assert!(by("b").iter().all(|b| !b.starts_with("copied")));
    assert_eq!(step(&plan, "b")["attempt"], 1);
    let out = sb.run(&["plans", "rerun", &original, "--from", "zz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("has no step `zz`"),
        "{}",
        text(&out.stderr)
    );
}
