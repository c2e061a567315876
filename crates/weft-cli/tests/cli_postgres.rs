//! Many nodes on one PostgreSQL: the real `weft` binary against a real server (a throwaway
//! cluster, or `WEFT_TEST_PG_URL`). Side-effect files count how often each step really ran.

mod common;
use common::{text, wait_for, NodeProcess, Sandbox};
use std::collections::BTreeMap;
use std::time::Duration;

/// A flow whose step appends the plan id to a file per step: the counts prove exactly-once.
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

fn sandbox() -> Sandbox {
    let sb = Sandbox::with_store(weft_testpg::url());
    sb.write("counted.toml", COUNTED);
    sb
}

fn submit_many(sb: &Sandbox, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let out = sb.run(&["submit", "counted.toml"]);
            assert!(out.status.success(), "submit: {}", text(&out.stderr));
            text(&out.stdout).trim().to_string()
        })
        .collect()
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

fn stopped_count(sb: &Sandbox) -> usize {
    let out = sb.run(&[
        "plans", "list", "--json", "--state", "stopped", "--limit", "100000",
    ]);
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .map(|v| v.len())
        .unwrap_or(0)
}

fn assert_each_once(sb: &Sandbox, ids: &[String]) {
    for file in ["ran-a", "ran-b"] {
        let c = counts(sb, file);
        for id in ids {
            assert_eq!(
                c.get(id),
                Some(&1),
                "{file}: plan {id} ran {:?} times",
                c.get(id)
            );
        }
    }
}

#[test]
fn a_flow_runs_on_postgres_from_the_cli() {
    let sb = sandbox();
    let out = sb.run(&["run", "counted.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = sb.last_plan();
    let plan = sb.show(&id);
    assert_eq!(plan["result"], "success");
    assert_eq!(counts(&sb, "ran-b").get(&id), Some(&1));
}

#[test]
fn three_nodes_share_300_plans_and_run_each_exactly_once() {
    let sb = sandbox();
    let nodes: Vec<NodeProcess> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| NodeProcess::start(&sb, n, &[]))
        .collect();
    let ids = submit_many(&sb, 300);
    wait_for("300 plans to stop", Duration::from_secs(120), || {
        (stopped_count(&sb) == 300).then_some(())
    });
    assert_each_once(&sb, &ids);
    // The work was shared: each node executed some plans (as the history says).
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let plan = sb.show(id);
        let by = plan["history"][0]["by"].as_str().unwrap_or("").to_string();
        let name = by.split('/').next().unwrap_or("").to_string();
        *by_node.entry(name).or_insert(0) += 1;
    }
    // Claims take plans in batches, so a node may be left out of a burst; but never does
    // one node take everything while others idle.
    assert!(by_node.len() >= 2, "{by_node:?}");
    drop(nodes);
}

#[test]
fn a_node_killed_mid_run_is_taken_over_and_nothing_that_succeeded_runs_again() {
    let sb = sandbox();
    let mut doomed = NodeProcess::start(&sb, "doomed", &[]);
    let ids = submit_many(&sb, 40);
    wait_for(
        "the doomed node to get going",
        Duration::from_secs(60),
        || (counts(&sb, "ran-a").len() >= 5).then_some(()),
    );
    doomed.sigkill();
    let _survivor = NodeProcess::start(&sb, "survivor", &[]);
    wait_for("every plan to stop", Duration::from_secs(120), || {
        (stopped_count(&sb) == 40).then_some(())
    });
    // Steps are idempotent (the default): one that was running when the node died may run
    // twice; one that succeeded never does.
    for id in &ids {
        let plan = sb.show(id);
        assert_eq!(plan["result"], "success", "{id}");
        for file in ["ran-a", "ran-b"] {
            let n = counts(&sb, file).get(id).copied().unwrap_or(0);
            assert!((1..=2).contains(&n), "{file}: plan {id} ran {n} times");
        }
        let history = plan["history"].as_array().cloned().unwrap_or_default();
        let successes = |step: i64| {
            history
                .iter()
                .filter(|e| e["step"] == step && e["to"] == "success")
                .count()
        };
        assert_eq!(successes(0), 1, "step a succeeded twice in {id}");
        assert_eq!(successes(1), 1, "step b succeeded twice in {id}");
    }
}

#[test]
fn two_nodes_race_for_a_delayed_plan_and_it_runs_once() {
    let sb = sandbox();
    let _n1 = NodeProcess::start(&sb, "r1", &[]);
    let _n2 = NodeProcess::start(&sb, "r2", &[]);
    let mut ids = Vec::new();
    for _ in 0..10 {
        let out = sb.run(&["submit", "counted.toml", "--delay", "1s"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        ids.push(text(&out.stdout).trim().to_string());
    }
    wait_for("the delayed plans to stop", Duration::from_secs(60), || {
        (stopped_count(&sb) == 10).then_some(())
    });
    assert_each_once(&sb, &ids);
    for id in &ids {
        let history = sb.show(id)["history"].clone();
        let promoted = history
            .as_array()
            .map(|h| h.iter().filter(|e| e["to"] == "planned").count())
            .unwrap_or(0);
        assert_eq!(promoted, 1, "plan {id} was promoted {promoted} times");
    }
}

#[test]
fn bad_postgres_urls_and_databases_are_clear_errors() {
    let sb = Sandbox::new();
    let base = weft_testpg::url();
    let run = |url: &str| sb.run(&["plans", "list", "--db", url]);
    // Malformed: a bad argument.
    let out = run("postgres://weft@127.0.0.1:notaport/x");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("malformed PostgreSQL URL"),
        "{}",
        text(&out.stderr)
    );
    // A wrong password.
    let (scheme_user, rest) = base.split_once('@').expect("url with credentials");
    let user = scheme_user
        .rsplit_once(':')
        .map(|(u, _)| u)
        .unwrap_or(scheme_user);
    let out = run(&format!("{user}:wrong@{rest}"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let e = text(&out.stderr);
    assert!(e.contains("password") && e.lines().count() == 1, "{e}");
    // An unreachable server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let out = run(&format!("postgres://weft:weft@127.0.0.1:{port}/weft"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot reach PostgreSQL"),
        "{}",
        text(&out.stderr)
    );
    // A role without permission to create tables: refused, and nothing left behind.
    let db = base
        .rsplit_once('/')
        .map(|(_, d)| d)
        .expect("db")
        .to_string();
    let role = format!("limited_{db}");
    weft_testpg::psql(
        &base,
        &format!("CREATE ROLE {role} LOGIN PASSWORD 'limited'; REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
    );
    let limited = format!("postgres://{role}:limited@{rest}");
    let out = run(&limited);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let e = text(&out.stderr);
    assert!(
        e.contains("permission denied") && e.contains("nothing was created"),
        "{e}"
    );
    let tables = weft_testpg::psql(
        &base,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    );
    assert_eq!(tables, "0", "a failed migration left tables behind");
    // A newer schema.
    assert!(run(&base).status.success());
    weft_testpg::psql(&base, "UPDATE weft_schema SET version = 99");
    let out = run(&base);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("newer than this weft supports"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn nodes_ride_out_a_postgres_restart_under_load() {
    let cluster = weft_testpg::Cluster::start().expect("a cluster of this test's own");
    let url = cluster.create_database("outage");
    let sb = Sandbox::with_store(url);
    sb.write("counted.toml", COUNTED);
    let n1 = NodeProcess::start(&sb, "o1", &[]);
    let n2 = NodeProcess::start(&sb, "o2", &[]);
    let mut ids = submit_many(&sb, 60);
    wait_for("work to start", Duration::from_secs(60), || {
        (counts(&sb, "ran-a").len() >= 3).then_some(())
    });
    cluster.stop_server().expect("stop PostgreSQL");
    std::thread::sleep(Duration::from_secs(5));
    cluster.start_server().expect("start PostgreSQL again");
    ids.extend(submit_many(&sb, 20));
    wait_for("every plan to stop", Duration::from_secs(180), || {
        (stopped_count(&sb) == ids.len()).then_some(())
    });
    for id in &ids {
        let plan = sb.show(id);
        assert_eq!(plan["result"], "success", "{id}: {plan}");
        let history = plan["history"].as_array().cloned().unwrap_or_default();
        for step in [0, 1] {
            let successes = history
                .iter()
                .filter(|e| e["step"] == step && e["to"] == "success")
                .count();
            assert_eq!(
                successes, 1,
                "step {step} of {id} succeeded {successes} times"
            );
        }
    }
    // A step re-runs only if it was running when the connection was cut (idempotent steps).
    for file in ["ran-a", "ran-b"] {
        let c = counts(&sb, file);
        assert!(c.values().all(|&n| n <= 2), "{file}: {c:?}");
    }
    let status = sb.run(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    // The nodes said what happened, and never printed the password.
    for node in [&n1, &n2] {
        let log = node.log();
        assert!(
            log.contains("store") && log.contains("stopped with an error"),
            "the outage was not logged: {log}"
        );
        assert!(log.contains("started again"), "{log}");
        assert!(
            !log.contains("weft:weft@"),
            "a node printed the password: {log}"
        );
    }
}

/// `faketime` runs a program with its clock moved (libfaketime); scripts/test.sh installs it.
fn skewed(offset: &str) -> Vec<String> {
    assert!(
        std::process::Command::new("faketime")
            .arg("--help")
            .output()
            .is_ok(),
        "faketime is not installed (Debian's `faketime`; scripts/test.sh installs it)"
    );
    vec!["faketime".into(), "-f".into(), offset.into()]
}

#[test]
fn a_node_with_a_skewed_clock_does_not_steal_live_claims() {
    let sb = sandbox();
    let wrapper = skewed("+30s");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    // faketime really moves weft's clock here: a run's history is 30 s ahead.
    let mut run = std::process::Command::new(wrapper[0]);
    run.args(&wrapper[1..])
        .arg(sb.weft().get_program())
        .args(["run", "counted.toml"])
        .current_dir(sb.path())
        .env("WEFT_DB", sb.url.clone().expect("a PostgreSQL sandbox"));
    let out = run.output().expect("run under faketime");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ahead = common::millis(&sb.show(&sb.last_plan())["history"][0]["at"]).unwrap_or(0)
        - weft_model::now_millis();
    assert!(
        ahead > 20_000,
        "faketime did not move weft's clock ({ahead} ms)"
    );

    // A node with a true clock runs a long plan; one 30 s ahead joins. With a 2 s lease, the
    // skewed node would see the other's heartbeats as 30 s old if it judged by its own clock.
    sb.write(
        "long.toml",
        "name = \"long\"\n[[task]]\nname = \"slow\"\nrun = [\"sleep\", \"6\"]\n",
    );
    let honest = NodeProcess::start(&sb, "honest", &[]);
    let out = sb.run(&["submit", "long.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    wait_for(
        "the honest node to take the plan",
        Duration::from_secs(30),
        || {
            let plan = sb.show(&id);
            (plan["steps"][0]["state"] == "running").then_some(())
        },
    );
    let skewed_node = NodeProcess::start_under(&sb, "skewed", &[], &wrapper);
    wait_for("the plan to finish", Duration::from_secs(60), || {
        let plan = sb.show(&id);
        (plan["plan"]["state"] == "stopped").then_some(())
    });
    let plan = sb.show(&id);
    let actors: Vec<String> = plan["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| e["by"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        actors.iter().all(|a| a.starts_with("honest/")),
        "the skewed node touched the honest node's plan: {actors:?}"
    );
    assert_eq!(counts_of_slow(&plan), 1);
    let log = skewed_node.log();
    assert!(!log.contains("invalidated a dead node"), "{log}");
    let status = sb.run(&["status", "--json"]);
    let nodes: Vec<serde_json::Value> = serde_json::from_slice(&status.stdout).unwrap_or_default();
    assert_eq!(
        nodes.len(),
        2,
        "both nodes are alive: {}",
        text(&status.stdout)
    );
    drop(honest);
}

/// How often the `slow` step started.
fn counts_of_slow(plan: &serde_json::Value) -> usize {
    plan["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|e| e["step"] == 0 && e["to"] == "running")
                .count()
        })
        .unwrap_or(0)
}

/// Regression (issue 12): a store failing during `weft run` exited 2 ("invalid input"); it is
/// 3, as documented, and the plan is left for a resume.
#[test]
fn a_store_lost_during_a_run_exits_3() {
    let cluster = weft_testpg::Cluster::start().expect("a cluster of this test's own");
    let url = cluster.create_database("lost");
    let sb = Sandbox::with_store(url);
    sb.write(
        "slow.toml",
        "name = \"slow\"\n[[task]]\nname = \"a\"\nrun = [\"sh\", \"-c\", 'touch started; sleep 2']\n[[task]]\nname = \"b\"\nafter = [\"a\"]\nrun = [\"true\"]\n",
    );
    let child = sb
        .weft()
        .args(["run", "slow.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for("the step to start", Duration::from_secs(30), || {
        sb.path().join("started").exists().then_some(())
    });
    cluster.stop_server().expect("stop PostgreSQL");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}
