//! Routing by capability: two applications with different Rust tasks and a `weft serve` node
//! (no Rust tasks) share one store; every plan runs on a process that registered its tasks,
//! none fails with an unregistered task, none waits once a capable node is up. On PostgreSQL
//! and on one SQLite file.

mod common;

use common::{NodeProcess, Sandbox};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use weft::prelude::*;

#[derive(Serialize, Deserialize)]
struct In {
    n: i64,
}

#[derive(Serialize, Deserialize)]
struct Out {
    out: i64,
}

/// An application registering only `task`.
async fn application(url: &str, name: &str, task: &str) -> (Engine, TaskRef) {
    let mut tasks = Registry::new();
    let added = tasks.add(
        task,
        "1",
        typed_fn(|i: In, _ctx| async move { Ok(Out { out: i.n + 1 }) }),
    );
    let engine = Engine::builder(url)
        .name(name)
        .lease(std::time::Duration::from_secs(2))
        .registry(tasks)
        .start()
        .await
        .expect("start an application");
    (engine, added)
}

async fn every_plan_runs_where_its_task_is(url: String) {
    let sb = Sandbox::with_store(url.clone());
    // A CLI node first: it must claim none of the plans below.
    let serve = NodeProcess::start(&sb, "cli-node", &[]);
    let (alpha_app, alpha) = application(&url, "app-alpha", "alpha").await;
    let (beta_app, beta) = application(&url, "app-beta", "beta").await;
    let flow = |task: &TaskRef| {
        FlowBuilder::linear(format!("needs-{}", task.name))
            .input("n", None)
            .step("work", task, |t| t)
            .build()
            .expect("flow")
    };
    let (alpha_flow, beta_flow) = (flow(&alpha), flow(&beta));
    // Submitted from each application for the other, so that every plan is routed through
    // the store: a submitter that cannot run a plan leaves it for a node that can.
    let mut plans = Vec::new();
    for n in 0..100 {
        let a = beta_app
            .submit(&alpha_flow, In { n })
            .await
            .expect("submit");
        let b = alpha_app
            .submit(&beta_flow, In { n })
            .await
            .expect("submit");
        plans.push((a, "app-alpha", n));
        plans.push((b, "app-beta", n));
    }
    let owners: HashMap<&str, String> = [
        ("app-alpha", alpha_app.node_id().to_string()),
        ("app-beta", beta_app.node_id().to_string()),
    ]
    .into();
    let store = alpha_app.store().clone();
    for (plan, runner, n) in &plans {
        let out: Out = tokio::time::timeout(std::time::Duration::from_secs(60), plan.result())
            .await
            .expect("every plan ends within a minute")
            .unwrap_or_else(|e| {
                panic!("plan {} failed: {e}\nnode log:\n{}", plan.id(), serve.log())
            });
        assert_eq!(out.out, n + 1);
        let history = store.history(plan.id()).await.expect("history");
        let ran_by: Vec<&str> = history
            .iter()
            .filter(|h| h.step == Some(0) && h.to == "running")
            .filter_map(|h| h.by.as_deref())
            .collect();
        assert_eq!(
            ran_by,
            vec![owners[runner].as_str()],
            "plan {} ran once, on {runner}",
            plan.id()
        );
    }
    assert!(
        !serve.log().contains("registered"),
        "the CLI node never took a plan it cannot run:\n{}",
        serve.log()
    );
    alpha_app.shutdown().await.expect("shutdown");
    beta_app.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plan_runs_where_its_task_is_on_postgres() {
    every_plan_runs_where_its_task_is(weft_testpg::url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plan_runs_where_its_task_is_on_one_sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("shared.db").display().to_string();
    every_plan_runs_where_its_task_is(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_no_live_node_can_run_waits_and_runs_once_one_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("waits.db").display().to_string();
    let sb = Sandbox::with_store(url.clone());
    // The task exists somewhere (an application that registered it, now gone).
    let (gone, late) = application(&url, "app-late", "late").await;
    gone.shutdown().await.expect("shutdown");
    let (submitter, _) = application(&url, "app-submitter", "other").await;
    let flow = FlowBuilder::linear("late")
        .input("n", None)
        .step("work", &late, |t| t)
        .build()
        .expect("flow");
    let plan = submitter.submit(&flow, In { n: 1 }).await.expect("submit");
    let shown = sb.run(&["plans", "show", &plan.id().to_string()]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("waiting for a node that runs `late`@1"),
        "{text}"
    );
    let (back, _) = application(&url, "app-late", "late").await;
    let out: Out = tokio::time::timeout(std::time::Duration::from_secs(30), plan.result())
        .await
        .expect("it runs once a capable node is up")
        .expect("result");
    assert_eq!(out.out, 2);
    back.shutdown().await.expect("shutdown");
    submitter.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_no_live_conductor_can_run_stays_on_the_board_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("jobs.db").display().to_string();
    let sb = Sandbox::with_store(url.clone());
    // A `weft serve` conductor runs no Rust tasks: it must leave the job alone.
    let _serve = NodeProcess::start(&sb, "cli-node", &[]);
    let (gone, late) = application(&url, "app-late", "late").await;
    gone.shutdown().await.expect("shutdown");
    let flow = FlowBuilder::linear("late")
        .input("n", None)
        .step("work", &late, |t| t)
        .build()
        .expect("flow");
    let (poster, _) = application(&url, "app-poster", "other").await;
    let inputs = std::collections::BTreeMap::from([("n".to_string(), serde_json::json!(1))]);
    let job = poster
        .board()
        .post("late", flow, inputs, weft::board::Priority::Normal)
        .await
        .expect("post");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let shown = sb.run(&["jobs", "show", &job.id().to_string()]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("waiting for a node that runs `late`@1") && text.contains("unclaimed"),
        "{text}"
    );
    // An application that runs `late` with a conductor takes it.
    let mut tasks = Registry::new();
    tasks.add(
        "late",
        "1",
        typed_fn(|i: In, _ctx| async move { Ok(Out { out: i.n + 1 }) }),
    );
    let runner = Engine::builder(&url)
        .name("app-late")
        .registry(tasks)
        .conductor(weft::board::ConductorConfig::default())
        .start()
        .await
        .expect("start");
    assert!(job
        .wait(Some(std::time::Duration::from_secs(30)))
        .await
        .expect("wait"));
    runner.shutdown().await.expect("shutdown");
    poster.shutdown().await.expect("shutdown");
}
