//! The job board from the command line: `weft jobs …` and conductors in `weft serve`, on a real
//! SQLite file and a real PostgreSQL, with real node processes killed by SIGKILL.

mod common;
use common::{text, wait_for, NodeProcess, Sandbox};
use std::collections::BTreeMap;
use std::time::Duration;

/// A flow whose steps append the plan id to a file each: the counts prove how often each ran.
const COUNTED: &str = r#"
name = "counted"
[[task]]
name = "a"
run = ["sh", "-c", 'echo "$WEFT_PLAN_ID" >> ran-a']
[[task]]
name = "b"
after = ["a"]
run = ["sh", "-c", 'sleep 0.05; echo "$WEFT_PLAN_ID" >> ran-b']
"#;

/// A flow that always fails on weft's side: its step kills the node running it.
const KILLS_ITS_NODE: &str = r#"
name = "kills-its-node"
[[task]]
name = "kill"
run = ["sh", "-c", 'echo "$WEFT_PLAN_ID" >> ran-kill; kill -9 $PPID; sleep 5']
"#;

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn post(sb: &Sandbox, args: &[&str]) -> String {
    let mut all = vec!["jobs", "post"];
    all.extend_from_slice(args);
    let out = sb.run(&all);
    assert!(out.status.success(), "post: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

fn job(sb: &Sandbox, id: &str) -> serde_json::Value {
    json(&sb.run(&["jobs", "show", id, "--json"]))
}

/// How often each plan id appears in a side-effect file.
fn counts(sb: &Sandbox, file: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(sb.path().join(file))
        .unwrap_or_default()
        .lines()
    {
        *out.entry(line.to_string()).or_insert(0) += 1;
    }
    out
}

#[test]
fn bad_input_is_refused_with_exit_code_2_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.write("counted.toml", COUNTED);
    sb.write("broken.toml", "name = \"broken\"\n[[task]]\nname = \"a\"\n");
    let id = post(&sb, &["counted.toml", "--priority", "high"]);
    let fails = |args: &[&str], says: &str| {
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
    };
    fails(
        &["jobs", "post", "counted.toml", "--priority", "urgent"],
        "valid priorities are VERY_HIGH, HIGH, NORMAL, LOW, VERY_LOW",
    );
    fails(&["jobs", "post", "broken.toml"], "broken.toml");
    fails(&["jobs", "show", "0000dead"], "no job");
    fails(&["jobs", "trash", &id], "--force");
    fails(&["jobs", "trash", &id, "--as", ""], "non-empty");
    fails(&["jobs", "retry", &id], "only a trashed job");
    // Nothing changed: one job, unclaimed, on the board.
    let board = json(&sb.run(&["jobs", "list", "--json"]));
    assert_eq!(board.as_array().map(Vec::len), Some(1));
    assert_eq!(board[0]["state"], "unclaimed");
    assert_eq!(board[0]["priority"], "HIGH");
    // An operator may, with --force; the trash keeps it; retry puts it back.
    assert!(sb.run(&["jobs", "trash", &id, "--force"]).status.success());
    let trash = json(&sb.run(&["jobs", "trashed", "--json"]));
    assert_eq!(trash[0]["id"], id.as_str());
    assert!(sb.run(&["jobs", "retry", &id]).status.success());
    assert_eq!(job(&sb, &id)["state"], "unclaimed");
}

#[test]
fn jobs_are_listed_most_urgent_first_then_oldest_and_run_by_a_node() {
    let sb = Sandbox::new();
    sb.write("counted.toml", COUNTED);
    let low = post(&sb, &["counted.toml", "--priority", "low", "--name", "low"]);
    let n1 = post(&sb, &["counted.toml", "--name", "normal-1"]);
    let top = post(
        &sb,
        &["counted.toml", "--priority", "VERY_HIGH", "--name", "top"],
    );
    let n2 = post(&sb, &["counted.toml", "--name", "normal-2"]);
    let listed: Vec<String> = json(&sb.run(&["jobs", "list", "--json"]))
        .as_array()
        .expect("list")
        .iter()
        .map(|j| j["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(listed, [top.clone(), n1.clone(), n2.clone(), low.clone()]);
    let text_list = text(&sb.run(&["jobs", "list"]).stdout);
    assert!(text_list.contains("VERY_HIGH") && text_list.contains("unclaimed"));
    let _node = NodeProcess::start(&sb, "conductor", &["--max-simultaneous-jobs", "1"]);
    wait_for("every job to complete", Duration::from_secs(60), || {
        [&low, &n1, &top, &n2]
            .iter()
            .all(|id| job(&sb, id)["state"] == "complete")
            .then_some(())
    });
    // One at a time, in claim order: the plans ran in the order the board listed the jobs.
    let plans: Vec<String> = [&top, &n1, &n2, &low]
        .iter()
        .map(|id| {
            job(&sb, id)["plan"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let ran: Vec<String> = std::fs::read_to_string(sb.path().join("ran-a"))
        .expect("ran-a")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ran, plans);
    let shown = job(&sb, &top);
    assert_eq!(shown["plan_result"], "success");
    let history = shown["history"].as_array().expect("history");
    let moves: Vec<&str> = history.iter().filter_map(|t| t["to"].as_str()).collect();
    assert_eq!(moves, ["unclaimed", "claimed", "complete"]);
    assert!(text(&sb.run(&["jobs", "list"]).stdout).contains("no jobs on the board"));
}

#[test]
fn a_job_whose_flow_always_kills_its_node_ends_in_the_trash_not_in_a_loop() {
    let sb = Sandbox::new();
    sb.write("kills.toml", KILLS_ITS_NODE);
    let id = post(&sb, &["kills.toml", "--max-attempts", "2"]);
    // A supervisor restarts the node each time the job's step kills it.
    let mut starts = 0;
    while job(&sb, &id)["state"] != "trashed" {
        starts += 1;
        assert!(starts <= 5, "the job was not trashed after {starts} starts");
        let node = NodeProcess::start(&sb, "victim", &[]);
        wait_for(
            "the node to be killed or the job trashed",
            Duration::from_secs(30),
            || {
                let dead = !common::alive(node.pid());
                (dead || job(&sb, &id)["state"] == "trashed").then_some(())
            },
        );
    }
    let shown = job(&sb, &id);
    assert_eq!(shown["attempts"], 2);
    assert!(
        shown["note"]
            .as_str()
            .unwrap_or_default()
            .contains("2 of 2"),
        "{shown}"
    );
    // Its step ran once per claim, and no node runs it again.
    let ran = counts(&sb, "ran-kill").values().sum::<usize>();
    assert_eq!(ran, 2, "the killing step ran {ran} times");
    let _node = NodeProcess::start(&sb, "victim", &[]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(counts(&sb, "ran-kill").values().sum::<usize>(), 2);
    let trash = text(&sb.run(&["jobs", "trashed"]).stdout);
    assert!(trash.contains(&id) && trash.contains("attempts"), "{trash}");
}

/// Posts `n` jobs of the counted flow at mixed priorities, straight into the store.
fn post_many(url: &str, n: usize, flow: &std::path::Path) -> Vec<(String, String)> {
    let flow = weft_model::flow::file::load(flow).expect("flow");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = weft_store::open(url).await.expect("open");
        let mut posted = Vec::new();
        for i in 0..n {
            let job = weft_store::NewJob {
                priority: weft_model::job::Priority::ALL[i % 5],
                ..weft_store::NewJob::new(flow.clone(), Default::default())
            };
            let job = store.post_job(job).await.expect("post");
            posted.push((job.id.to_string(), job.plan.to_string()));
        }
        posted
    })
}

#[test]
fn three_nodes_on_postgres_run_500_jobs_once_each_through_a_sigkill() {
    let sb = Sandbox::with_store(weft_testpg::url());
    let flow = sb.write("counted.toml", COUNTED);
    let url = sb.url.clone().expect("url");
    let jobs = post_many(&url, 500, &flow);
    let extra = ["--max-simultaneous-jobs", "8"];
    let mut doomed = NodeProcess::start(&sb, "doomed", &extra);
    let _n2 = NodeProcess::start(&sb, "n2", &extra);
    let _n3 = NodeProcess::start(&sb, "n3", &extra);
    wait_for("work to get going", Duration::from_secs(60), || {
        (counts(&sb, "ran-a").len() >= 100).then_some(())
    });
    doomed.sigkill();
    wait_for("the board to empty", Duration::from_secs(180), || {
        json(&sb.run(&["jobs", "list", "--json", "--limit", "1000"]))
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    });
    let (ran_a, ran_b) = (counts(&sb, "ran-a"), counts(&sb, "ran-b"));
    let plans = json(&sb.run(&["plans", "list", "--json", "--limit", "100000"]));
    let plans = plans.as_array().expect("plans");
    // Exactly one plan per job, each stopped with success.
    assert_eq!(plans.len(), 500);
    assert!(plans
        .iter()
        .all(|p| p["state"] == "stopped" && p["result"] == "success"));
    for (id, plan) in &jobs {
        let shown = job(&sb, id);
        assert_eq!(shown["state"], "complete", "{shown}");
        assert_eq!(shown["plan"], plan.as_str());
        // Steps run at most twice: once more only if they were running when the node died.
        for (file, ran) in [("ran-a", &ran_a), ("ran-b", &ran_b)] {
            let n = ran.get(plan).copied().unwrap_or(0);
            assert!((1..=2).contains(&n), "{file}: job {id} ran {n} times");
        }
    }
    assert!(json(&sb.run(&["jobs", "trashed", "--json"]))
        .as_array()
        .is_some_and(Vec::is_empty));
}

#[test]
fn two_nodes_on_one_sqlite_file_share_the_board_and_run_each_job_once() {
    let sb = Sandbox::new();
    let flow = sb.write("counted.toml", COUNTED);
    let url = sb.db().display().to_string();
    // The file exists before the nodes open it.
    let jobs = post_many(&url, 100, &flow);
    let extra = ["--max-simultaneous-jobs", "4"];
    let _a = NodeProcess::start(&sb, "a", &extra);
    let _b = NodeProcess::start(&sb, "b", &extra);
    wait_for("every job to complete", Duration::from_secs(120), || {
        json(&sb.run(&["jobs", "list", "--json", "--limit", "1000"]))
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    });
    let ran_b = counts(&sb, "ran-b");
    let mut owners = std::collections::BTreeSet::new();
    for (id, plan) in &jobs {
        assert_eq!(
            ran_b.get(plan),
            Some(&1),
            "job {id} ran {:?} times",
            ran_b.get(plan)
        );
        let shown = job(&sb, id);
        assert_eq!(shown["state"], "complete");
        let owner = shown["owner"].as_str().unwrap_or_default();
        owners.insert(owner.split('/').next().unwrap_or_default().to_string());
    }
    // Both nodes took jobs (claims are batched, so not necessarily evenly).
    assert_eq!(owners.len(), 2, "{owners:?}");
}
