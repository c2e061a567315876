//! `weft logs`: what tasks printed, kept in the store — every attempt, reverts and group tasks,
//! capped with the cut marked, binary output as it was, followed live from another process.

mod common;
use common::{text, wait_for, NodeProcess, Sandbox};
use std::process::Stdio;
use std::time::Duration;

const FLOW: &str = r#"
name = "printing"
on_error = "revert"
[[task]]
name = "noisy"
run = ["sh", "-c", 'echo out one; echo err one >&2; echo out two; printf "\000\377raw"']
revert = ["sh", "-c", 'echo undoing noisy']
[[group]]
name = "pair"
after = ["noisy"]
[[group.task]]
name = "left"
run = ["sh", "-c", 'echo from left']
[[group.task]]
name = "right"
run = ["sh", "-c", 'echo from right']
[[task]]
name = "flaky"
after = ["pair"]
retry = { attempts = 2, delay = "10ms" }
run = ["sh", "-c", 'echo try $WEFT_ATTEMPT; exit 1']
"#;

fn logs(sb: &Sandbox, args: &[&str]) -> Vec<u8> {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    let out = sb.run(&all);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    out.stdout
}

#[test]
fn every_attempt_revert_and_group_task_is_kept_and_filtered() {
    let sb = Sandbox::new();
    sb.write("printing.toml", FLOW);
    let out = sb.run(&["run", "printing.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let id = sb.last_plan();
    let all = text(&logs(&sb, &[&id]));
    for want in [
        "==> noisy attempt 1 stdout <==\nout one\nout two\n",
        "==> noisy attempt 1 stderr <==\nerr one\n",
        "==> pair task left attempt 1 stdout <==\nfrom left\n",
        "==> pair task right attempt 1 stdout <==\nfrom right\n",
        "==> flaky attempt 1 stdout <==\ntry 1\n",
        "==> flaky attempt 2 stdout <==\ntry 2\n",
        "==> noisy attempt 1 (revert) stdout <==\nundoing noisy\n",
    ] {
        assert!(all.contains(want), "{want:?} in:\n{all}");
    }
    // One step's one stream prints as it was written: bytes and all, no header.
    let raw = logs(&sb, &[&id, "noisy", "--stream", "stdout"]);
    assert!(raw.starts_with(b"out one\nout two\n\x00\xffraw"), "{raw:?}");
    assert_eq!(
        text(&logs(&sb, &[&id, "flaky", "--attempt", "2"])),
        "==> flaky attempt 2 stdout <==\ntry 2\n"
    );
    let json = text(&logs(&sb, &[&id, "flaky", "--json"]));
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["attempt"], 2);
    assert_eq!(lines[1]["text"], "try 2\n");
    // Bad input: exit 2, naming what is wrong.
    let out = sb.run(&["logs", &id, "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no step `nosuch`; its steps: noisy, pair, flaky"));
    let out = sb.run(&["logs", &id, "--stream", "stdin"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_large_output_keeps_its_head_and_tail_with_the_cut_marked() {
    let sb = Sandbox::new();
    sb.write(
        "big.toml",
        "name = \"big\"\n[[task]]\nname = \"seq\"\nrun = [\"seq\", \"1\", \"500000\"]\n",
    );
    let out = sb.run(&["run", "big.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = sb.last_plan();
    let kept = text(&logs(&sb, &[&id, "seq", "--stream", "stdout"]));
    let lines: Vec<&str> = kept.lines().collect();
    assert_eq!(lines[0], "1");
    assert_eq!(lines.last().copied(), Some("500000"));
    let marks: Vec<&&str> = lines.iter().filter(|l| l.contains("bytes cut")).collect();
    assert_eq!(marks.len(), 1, "one cut: {marks:?}");
    // About 1 MiB of 3.4 MB kept.
    assert!(kept.len() <= (1 << 20) + 100, "{}", kept.len());
    assert!(kept.len() > 900_000, "{}", kept.len());
}

#[test]
fn logs_follow_a_running_plan_from_another_process() {
    let sb = Sandbox::new();
    sb.write(
        "slow.toml",
        "name = \"slow\"\n[[task]]\nname = \"talk\"\n\
         run = [\"sh\", \"-c\", 'echo first; while [ ! -e go ]; do sleep 0.05; done; echo second']\n",
    );
    let _node = NodeProcess::start(&sb, "n1", &[]);
    let id = text(&sb.run(&["submit", "slow.toml"]).stdout)
        .trim()
        .to_string();
    let follower = sb
        .weft()
        .args(["logs", &id, "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("logs -f");
    // "first" is kept while the step still runs, within a second.
    wait_for("the first line", Duration::from_secs(10), || {
        text(&sb.run(&["logs", &id]).stdout)
            .contains("first")
            .then_some(())
    });
    sb.write("go", "");
    let out = follower
        .wait_with_output()
        .expect("logs -f ends with the plan");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "==> talk attempt 1 stdout <==\nfirst\nsecond\n"
    );
}

/// A task that closes its stdout early and keeps running: its result is its exit, its later
/// stderr is kept.
#[test]
fn a_task_closing_stdout_early_keeps_its_result_and_its_later_output() {
    let sb = Sandbox::new();
    sb.write(
        "closer.toml",
        "name = \"closer\"\n[[task]]\nname = \"c\"\n\
         run = [\"sh\", \"-c\", 'echo before; exec 1>&-; sleep 0.3; echo after >&2']\n",
    );
    let out = sb.run(&["run", "closer.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = sb.last_plan();
    let all = text(&logs(&sb, &[&id]));
    assert!(all.contains("stdout <==\nbefore\n"), "{all}");
    assert!(all.contains("stderr <==\nafter\n"), "{all}");
}
