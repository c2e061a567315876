//! `weft schedules`: ticks fired by the nodes sharing a store — each exactly once, however
//! many nodes look and even when one of them is SIGKILLed — and the commands around them.

mod common;
use common::{text, wait_for, NodeProcess, Sandbox};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FLOW: &str = "name = \"tick\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A cron that fires every second of `seconds` (e.g. `0-59`) of the next whole minute at
/// least 5 s away, and when that minute starts (ms since the epoch).
fn within_next_minute(seconds: &str) -> (String, i64) {
    let now = now_ms();
    let mut start = (now / 60_000 + 1) * 60_000;
    if start - now < 5_000 {
        start += 60_000;
    }
    let secs = start / 1000;
    let (minute, hour) = ((secs / 60) % 60, (secs / 3600) % 24);
    let days = secs / 86_400;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (format!("{seconds} {minute} {hour} {day} {month} *"), start)
}

fn plans_of(sb: &Sandbox) -> Vec<serde_json::Value> {
    let out = sb.run(&["plans", "list", "--json", "--limit", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

fn sleep_until(at: i64) {
    let left = at - now_ms();
    if left > 0 {
        std::thread::sleep(Duration::from_millis(left as u64));
    }
}

/// Three nodes; every second of one minute is a tick; one node is SIGKILLed halfway.
fn exactly_one_plan_per_tick(sb: &Sandbox) {
    sb.write("tick.toml", FLOW);
    let (cron, start) = within_next_minute("*");
    let out = sb.run(&[
        "schedules",
        "add",
        "every-second",
        "tick.toml",
        "--cron",
        &cron,
        "--overlap",
        "allow",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut nodes: Vec<NodeProcess> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| NodeProcess::start(sb, n, &[]))
        .collect();
    sleep_until(start + 30_500);
    nodes[0].sigkill();
    sleep_until(start + 62_000);
    let plans = wait_for(
        "every tick's plan to finish",
        Duration::from_secs(30),
        || {
            let p = plans_of(sb);
            p.iter().all(|p| p["state"] == "stopped").then_some(p)
        },
    );
    assert_eq!(plans.len(), 60, "one plan per tick of the minute");
}

#[test]
fn every_tick_fires_once_across_three_postgres_nodes_one_killed() {
    exactly_one_plan_per_tick(&Sandbox::with_store(weft_testpg::url()));
}

#[test]
fn schedules_are_added_listed_paused_triggered_and_removed() {
    let sb = Sandbox::new();
    sb.write("tick.toml", FLOW);
    let bad = sb.run(&["schedules", "add", "x", "tick.toml", "--cron", "61 * * * *"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("minute field `61`"),
        "{}",
        text(&bad.stderr)
    );
    let bad = sb.run(&[
        "schedules",
        "add",
        "x",
        "tick.toml",
        "--cron",
        "@daily",
        "--timezone",
        "Mars/Base",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("Mars/Base"),
        "{}",
        text(&bad.stderr)
    );
    let bad = sb.run(&[
        "schedules",
        "add",
        "x",
        "tick.toml",
        "--cron",
        "@daily",
        "--overlap",
        "maybe",
    ]);
    assert_eq!(bad.status.code(), Some(2));

    let out = sb.run(&[
        "schedules",
        "add",
        "nightly",
        "tick.toml",
        "--cron",
        "0 3 * * *",
        "--timezone",
        "Europe/Berlin",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = sb.run(&["schedules", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(list[0]["name"], "nightly");
    let next: Vec<&str> = list[0]["next"]
        .as_array()
        .expect("next")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(next.len(), 3);
    // 03:00 in Berlin is 01:00 or 02:00 UTC, by the season.
    assert!(
        next.iter()
            .all(|t| t.contains("T01:00:00") || t.contains("T02:00:00")),
        "{next:?}"
    );
    let table = text(&sb.run(&["schedules", "list"]).stdout);
    assert!(table.contains("0 3 * * * (Europe/Berlin)"), "{table}");

    // A trigger starts it now; a node runs the plan.
    let out = sb.run(&["schedules", "trigger", "nightly"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout).trim().to_string();
    let _node = NodeProcess::start(&sb, "n1", &[]);
    let out = sb.run(&["plans", "wait", &plan]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    assert!(sb.run(&["schedules", "pause", "nightly"]).status.success());
    assert!(text(&sb.run(&["schedules", "list"]).stdout).contains("paused"));
    assert!(sb.run(&["schedules", "resume", "nightly"]).status.success());
    assert!(sb.run(&["schedules", "remove", "nightly"]).status.success());
    let out = sb.run(&["schedules", "remove", "nightly"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no schedule `nightly`"));
    assert!(text(&sb.run(&["schedules", "list"]).stdout).contains("no schedules"));
}

/// Two nodes on one SQLite file, a tick every second for five seconds: five plans.
#[test]
fn sqlite_nodes_fire_each_tick_once() {
    let sb = Sandbox::new();
    sb.write("tick.toml", FLOW);
    let (cron, start) = within_next_minute("0-4");
    let out = sb.run(&[
        "schedules",
        "add",
        "five",
        "tick.toml",
        "--cron",
        &cron,
        "--overlap",
        "allow",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _nodes: Vec<NodeProcess> = ["n1", "n2"]
        .iter()
        .map(|n| NodeProcess::start(&sb, n, &[]))
        .collect();
    sleep_until(start + 6_000);
    let plans = wait_for(
        "the ticks' plans to finish",
        Duration::from_secs(20),
        || {
            let p = plans_of(&sb);
            (p.len() >= 5 && p.iter().all(|p| p["state"] == "stopped")).then_some(p)
        },
    );
    assert_eq!(plans.len(), 5);
}

/// A flow file whose `[schedule]` fires every second, in Berlin time, with an input.
const SCHEDULED: &str = r#"name = "heartbeat"
[inputs]
who = { required = true }
[schedule]
cron = "* * * * * *"
timezone = "Europe/Berlin"
inputs = { who = "cron" }
overlap = "allow"
[[task]]
name = "beat"
requires = ["who"]
run = ["true"]
"#;

#[test]
fn a_flow_files_schedule_is_added_from_the_file_and_installed_by_a_node() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path().join("flows")).expect("flows dir");
    sb.write("flows/heartbeat.toml", SCHEDULED);
    sb.write("tick.toml", FLOW);
    // No --cron and no [schedule]: refused by name.
    let out = sb.run(&["schedules", "add", "x", "tick.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("tick.toml has no [schedule] table: say when with --cron"),
        "{}",
        text(&out.stderr)
    );
    // `schedules add` takes the file's table; options override it.
    let out = sb.run(&[
        "schedules",
        "add",
        "hourly",
        "flows/heartbeat.toml",
        "--cron",
        "@hourly",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&sb.run(&["schedules", "list", "--json"]).stdout).expect("json");
    assert_eq!(listed[0]["cron"], "@hourly");
    assert_eq!(listed[0]["timezone"], "Europe/Berlin");
    assert_eq!(listed[0]["overlap"], "allow");
    sb.run(&["schedules", "remove", "hourly"]);
    // A node given the directory installs it under the flow's name and fires it.
    let node = NodeProcess::start(&sb, "n", &["--flows", "flows"]);
    let plans = wait_for("the schedule's plans", Duration::from_secs(20), || {
        let p = plans_of(&sb);
        (p.len() >= 2).then_some(p)
    });
    assert!(plans.iter().all(|p| p["flow"] == "heartbeat"), "{plans:?}");
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&sb.run(&["schedules", "list", "--json"]).stdout).expect("json");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "heartbeat");
    assert_eq!(listed[0]["cron"], "* * * * * *");
    let id = plans[0]["id"].as_str().expect("id");
    assert_eq!(sb.show(id)["plan"]["inputs"]["who"], "cron");
    assert!(
        node.log().contains("schedule heartbeat installed"),
        "{}",
        node.log()
    );
}
