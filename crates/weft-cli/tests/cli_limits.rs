//! Concurrency limits and queues: never more plans or steps of a key running than its limit,
//! across nodes on PostgreSQL; what waits says so in `plans show`; a dead node's slots go with
//! its lease; queues are set, listed and removed; bad input is refused by name.

mod common;
use common::{http, http_port, text, wait_for, NodeProcess, Sandbox};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Each plan's one task marks itself running (a file named for its key) for 50 ms.
const LIMITED: &str = r#"name = "limited"
concurrency = { key = "${inputs.tenant}", limit = 3 }
[inputs]
tenant = { required = true }
[[task]]
name = "work"
requires = ["tenant"]
run = ["sh", "-c", "f=marks/$WEFT_IN_TENANT.$$; : > $f; sleep 0.05; rm $f"]
"#;

fn plans_of(sb: &Sandbox) -> Vec<serde_json::Value> {
    let out = sb.run(&["plans", "list", "--json", "--limit", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// How many marks each key has right now.
fn running_by_key(dir: &std::path::Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some((key, _)) = name.split_once('.') {
                *out.entry(key.to_string()).or_insert(0) += 1;
            }
        }
    }
    out
}

#[test]
fn two_hundred_plans_never_run_more_than_three_per_key_across_three_postgres_nodes() {
    let sb = Sandbox::with_store(weft_testpg::url());
    sb.write("limited.toml", LIMITED);
    std::fs::create_dir(sb.path().join("marks")).expect("marks dir");
    // The store's schema exists before the submitting processes race to create it.
    let out = sb.run(&["queues", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tenants = ["a", "b", "c", "d"];
    std::thread::scope(|scope| {
        for t in tenants {
            let sb = &sb;
            scope.spawn(move || {
                for _ in 0..50 {
                    let input = format!("tenant={t}");
                    let out = sb.run(&["submit", "limited.toml", "-i", &input]);
                    assert!(out.status.success(), "{}", text(&out.stderr));
                }
            });
        }
    });
    let nodes: Vec<NodeProcess> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| NodeProcess::start(&sb, n, &["--parallelism", "16"]))
        .collect();
    let done = AtomicBool::new(false);
    let marks = sb.path().join("marks");
    let (most, samples) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut most: BTreeMap<String, usize> = BTreeMap::new();
            let mut samples = 0;
            while !done.load(Ordering::SeqCst) {
                for (key, n) in running_by_key(&marks) {
                    let m = most.entry(key).or_insert(0);
                    *m = (*m).max(n);
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            (most, samples)
        });
        wait_for("200 plans to finish", Duration::from_secs(180), || {
            let p = plans_of(&sb);
            (p.len() == 200 && p.iter().all(|p| p["state"] == "stopped")).then_some(())
        });
        done.store(true, Ordering::SeqCst);
        sampler.join().expect("sampler")
    });
    drop(nodes);
    assert!(samples > 100, "sampled {samples} times");
    for t in tenants {
        let m = most.get(t).copied().unwrap_or(0);
        assert!(m <= 3, "key {t} had {m} running at once: {most:?}");
    }
    assert!(
        most.values().any(|&m| m == 3),
        "the limit is used, not just kept: {most:?}"
    );
    let plans = plans_of(&sb);
    assert!(
        plans.iter().all(|p| p["result"] == "success"),
        "every plan succeeded"
    );
}

/// A limit of one; the first plan runs long, the second waits for the slot and says so.
const ONE_AT_A_TIME: &str = r#"name = "serial"
concurrency = { limit = 1 }
[[task]]
name = "hold"
run = ["sh", "-c", "sleep 3"]
"#;

#[test]
fn a_waiting_plan_says_why_and_a_dead_nodes_slot_goes_with_its_lease() {
    let sb = Sandbox::with_store(weft_testpg::url());
    sb.write("serial.toml", ONE_AT_A_TIME);
    let submit = || {
        let out = sb.run(&["submit", "serial.toml"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    let first = submit();
    let mut a = NodeProcess::start(&sb, "a", &["--http", "127.0.0.1:0"]);
    let port = http_port(&a);
    wait_for("the first plan to run", Duration::from_secs(20), || {
        (sb.show(&first)["steps"][0]["state"] == "running").then_some(())
    });
    let second = submit();
    let waiting = wait_for(
        "the second plan to wait in line",
        Duration::from_secs(20),
        || {
            let out = sb.run(&["plans", "show", &second]);
            let shown = text(&out.stdout);
            shown
                .contains("waiting for a slot in flow `serial` (limit 1): 1 of 1 held")
                .then_some(shown)
        },
    );
    assert!(waiting.lines().next().is_some());
    // The HTTP API says the same; the plan has not started.
    let r = http(port, "GET", &format!("/api/plans/{second}"), &[], b"");
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let plan = r.json();
    assert_eq!(plan["state"], "planned");
    assert!(
        plan["waiting"][0]
            .as_str()
            .is_some_and(|w| w.starts_with("waiting for a slot in flow `serial` (limit 1)")),
        "{plan}"
    );
    // Node a dies holding the slot: node b frees it with a's lease and runs both.
    a.sigkill();
    let _b = NodeProcess::start(&sb, "b", &[]);
    for id in [&first, &second] {
        wait_for("both plans to finish on b", Duration::from_secs(60), || {
            let p = sb.show(id);
            (p["plan"]["state"] == "stopped").then_some(())
        });
        assert_eq!(sb.show(id)["result"], "success");
    }
}

#[test]
fn a_queue_holds_steps_of_many_tasks_on_sqlite_in_the_foreground() {
    let sb = Sandbox::new();
    // Six parallel steps in one queue of limit 2: never more than two at once.
    let out = sb.run(&["queues", "set", "pool", "--limit", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut flow = String::from("name = \"fan\"\n");
    for i in 0..6 {
        flow.push_str(&format!(
            "[[task]]\nname = \"s{i}\"\nqueue = \"pool\"\n\
             run = [\"sh\", \"-c\", \"n=$(ls marks | wc -l); echo $n >> seen; : > marks/s{i}; sleep 0.2; rm marks/s{i}\"]\n"
        ));
    }
    sb.write("fan.toml", &flow);
    std::fs::create_dir(sb.path().join("marks")).expect("marks dir");
    let out = sb.run(&["run", "fan.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Each step saw how many others ran when it started: at most one.
    let seen = std::fs::read_to_string(sb.path().join("seen")).expect("seen");
    let counts: Vec<usize> = seen.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(counts.len(), 6);
    assert!(counts.iter().all(|&n| n <= 1), "{counts:?}");
}

#[test]
fn queues_are_set_listed_and_removed_and_bad_ones_refused() {
    let sb = Sandbox::new();
    let ok = |args: &[&str]| {
        let out = sb.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(&["queues", "set", "mail", "--limit", "5", "--rate", "100/m"]);
    ok(&["queues", "set", "batch", "--limit", "2"]);
    let listed = ok(&["queues", "list"]);
    assert!(listed.contains("mail"), "{listed}");
    assert!(listed.contains("100/m"), "{listed}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["queues", "list", "--json"])).expect("json");
    assert_eq!(json[0]["name"], "batch");
    assert_eq!(json[1]["rate"], "100/m");
    assert_eq!(json[1]["limit"], 5);
    ok(&["queues", "remove", "batch"]);
    let listed = ok(&["queues", "list"]);
    assert!(!listed.contains("batch"), "{listed}");
    for (args, want) in [
        (
            vec!["queues", "set", "mail", "--rate", "fast"],
            "expected COUNT/PERIOD",
        ),
        (vec!["queues", "set", "mail"], "--limit N, --rate"),
        (vec!["queues", "set", "mail", "--limit", "0"], "at least 1"),
        (
            vec!["queues", "set", "my queue", "--limit", "1"],
            "holds ` `",
        ),
        (vec!["queues", "remove", "nothing"], "no queue `nothing`"),
    ] {
        let out = sb.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(want),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // A flow naming an input its key does not have is refused before anything is stored.
    sb.write(
        "bad.toml",
        "name = \"bad\"\nconcurrency = { key = \"${inputs.who}\", limit = 1 }\n\
         [[task]]\nname = \"a\"\nrun = [\"true\"]\n",
    );
    let out = sb.run(&["submit", "bad.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("the flow has no input `who`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_queue_with_a_rate_paces_its_plans() {
    let sb = Sandbox::new();
    // Two per second, one at first in the bucket's burst of two: four plans take a second.
    sb.write(
        "paced.toml",
        "name = \"paced\"\nqueue = \"slow\"\n[[task]]\nname = \"a\"\n\
         run = [\"sh\", \"-c\", \"date +%s%N >> starts\"]\n",
    );
    let out = sb.run(&["queues", "set", "slow", "--rate", "2/s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for _ in 0..4 {
        let out = sb.run(&["submit", "paced.toml"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let _node = NodeProcess::start(&sb, "n", &[]);
    wait_for("four plans", Duration::from_secs(30), || {
        let p = plans_of(&sb);
        p.iter().all(|p| p["state"] == "stopped").then_some(())
    });
    let starts = std::fs::read_to_string(sb.path().join("starts")).expect("starts");
    let mut ns: Vec<u128> = starts.lines().filter_map(|l| l.parse().ok()).collect();
    ns.sort();
    assert_eq!(ns.len(), 4);
    // The burst of two goes at once; the other two wait for tokens (0.5 s apart).
    let spread_ms = (ns[3] - ns[0]) / 1_000_000;
    assert!(spread_ms >= 700, "four starts within {spread_ms} ms");
}

#[test]
fn the_tenants_example_runs_under_its_limit_and_queue() {
    let sb = Sandbox::new();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tenants.toml");
    let out = sb.run(&["queues", "set", "uploads", "--limit", "4", "--rate", "60/m"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = sb.run(&["run", example, "-i", "tenant=acme"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = sb.run(&["schedules", "add", "nightly", example]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&sb.run(&["schedules", "list"]).stdout);
    assert!(listed.contains("30 2 * * * (Europe/Berlin)"), "{listed}");
}
