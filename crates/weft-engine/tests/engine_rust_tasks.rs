//! The engine with Rust tasks on a real SQLite file: data flow through the builder's flow
//! shapes, revert with the task's result and the cause, retries, timeouts, and recovery of a
//! plan left `running` by a process that died.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_engine::{task_fn, Config, Context, Engine, Registry, Rescue, RevertContext, Task};
use weft_model::flow::{FlowBuilder, Retry};
use weft_model::plan::{self, Outcome};
use weft_model::{now_millis, step, Failure};
use weft_store::{BoxFuture, Change, SharedStore, StepRecord};

fn sqlite() -> (tempfile::TempDir, SharedStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: SharedStore = std::sync::Arc::new(
        weft_store::sqlite::SqliteStore::open(&dir.path().join("weft.db")).expect("open"),
    );
    (dir, store)
}

fn config() -> Config {
    Config {
        parallelism: 8,
        owner: "test".into(),
        remote: None,
        log_cap: 0,
    }
}

/// Adds its input `n` to its own `add`, and records executions and reverts in a shared log.
struct Add {
    add: i64,
    output: &'static str,
    log: Arc<Mutex<Vec<String>>>,
}

impl Task for Add {
    fn execute(&self, ctx: Context) -> BoxFuture<Result<Value, Failure>> {
        let (add, output, log) = (self.add, self.output, self.log.clone());
        Box::pin(async move {
            let n: i64 = ctx.inputs.values().filter_map(Value::as_i64).sum();
            log.lock().expect("log").push(format!("run {}", ctx.step));
            Ok(json!({ output: n + add }))
        })
    }

    fn revert(&self, ctx: RevertContext) -> BoxFuture<Result<(), Failure>> {
        let log = self.log.clone();
        Box::pin(async move {
            log.lock().expect("log").push(format!(
                "revert {} result={} cause={}",
                ctx.context.step,
                ctx.result.unwrap_or(Value::Null),
                ctx.failure.message
            ));
            Ok(())
        })
    }
}

fn registry(log: &Arc<Mutex<Vec<String>>>) -> Registry {
    let mut r = Registry::new();
    r.register(
        "add1",
        "1",
        Add {
            add: 1,
            output: "a",
            log: log.clone(),
        },
    )
    .register(
        "add10",
        "1",
        Add {
            add: 10,
            output: "b",
            log: log.clone(),
        },
    )
    .register(
        "sum",
        "1",
        Add {
            add: 0,
            output: "total",
            log: log.clone(),
        },
    )
    .register(
        "fail",
        "1",
        task_fn(|_| async { Err(Failure::new("boom", "it broke")) }),
    );
    r
}

#[tokio::test]
async fn values_flow_between_rust_tasks_in_a_graph() {
    let (_dir, store) = sqlite();
    let log = Arc::new(Mutex::new(Vec::new()));
    let flow = FlowBuilder::graph("g")
        .input("n", None)
        .task("left", "add1", "1", |t| t.requires(["n"]).provides(["a"]))
        .task("right", "add10", "1", |t| t.requires(["n"]).provides(["b"]))
        .task("sum", "sum", "1", |t| {
            t.requires(["a", "b"]).provides(["total"])
        })
        .build()
        .expect("valid");
    let engine = Engine::start(store.clone(), Arc::new(registry(&log)), config());
    let id = engine
        .plan(flow, BTreeMap::from([("n".into(), json!(5))]))
        .await
        .expect("plan");
    let end = engine.execute(id, Rescue::Revert).await.expect("execute");
    assert_eq!(
        (end.state, end.outcome),
        (plan::State::Stopped, Outcome::Success)
    );
    let snap = store.load_plan(id).await.expect("load");
    assert_eq!(snap.steps[2].output, Some(json!({"total": 21})));
    // Every transition is in the history.
    let history = store.history(id).await.expect("history");
    assert_eq!(history.iter().filter(|h| h.step.is_some()).count(), 6);
}

#[tokio::test]
async fn a_failure_reverts_rust_tasks_with_their_result_and_the_cause() {
    let (_dir, store) = sqlite();
    let log = Arc::new(Mutex::new(Vec::new()));
    let flow = FlowBuilder::linear("l")
        .input("n", Some(json!(1)))
        .task("first", "add1", "1", |t| t.requires(["n"]).provides(["a"]))
        .task("second", "add10", "1", |t| {
            t.requires(["a"]).provides(["b"])
        })
        .task("third", "fail", "1", |t| t.requires(["b"]))
        .build()
        .expect("valid");
    let engine = Engine::start(store.clone(), Arc::new(registry(&log)), config());
    let id = engine.plan(flow, BTreeMap::new()).await.expect("plan");
    let end = engine.execute(id, Rescue::Revert).await.expect("execute");
    assert_eq!(
        (end.state, end.outcome),
        (plan::State::Stopped, Outcome::Error)
    );
    assert_eq!(end.failure.map(|f| f.message), Some("it broke".into()));
    let log = log.lock().expect("log").clone();
    assert_eq!(
        log,
        vec![
            "run first",
            "run second",
            "revert second result={\"b\":12} cause=it broke",
            "revert first result={\"a\":2} cause=it broke",
        ]
    );
}

#[tokio::test]
async fn a_rust_task_is_retried_until_it_succeeds() {
    let (_dir, store) = sqlite();
    let calls = Arc::new(AtomicU32::new(0));
    let mut r = Registry::new();
    let c = calls.clone();
    r.register(
        "flaky",
        "1",
        task_fn(move |ctx| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                if ctx.attempt < 3 {
                    Err(Failure::new("flaky", "not yet"))
                } else {
                    Ok(json!({}))
                }
            }
        }),
    );
    let retry = Retry {
        attempts: 3,
        delay: Duration::from_millis(10),
        ..Retry::default()
    };
    let flow = FlowBuilder::linear("r")
        .task("f", "flaky", "1", |t| t.retry(retry))
        .build()
        .expect("valid");
    let engine = Engine::start(store.clone(), Arc::new(r), config());
    let id = engine.plan(flow, BTreeMap::new()).await.expect("plan");
    let end = engine.execute(id, Rescue::Revert).await.expect("execute");
    assert_eq!(end.outcome, Outcome::Success);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(store.load_plan(id).await.expect("load").steps[0].attempt, 3);
}

#[tokio::test]
async fn a_rust_task_past_its_timeout_fails() {
    let (_dir, store) = sqlite();
    let mut r = Registry::new();
    r.register(
        "slow",
        "1",
        task_fn(|_| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(json!({}))
        }),
    );
    let flow = FlowBuilder::linear("t")
        .task("slow", "slow", "1", |t| {
            t.timeout(Duration::from_millis(50))
                .kill_timeout(Duration::from_millis(100))
        })
        .build()
        .expect("valid");
    let engine = Engine::start(store.clone(), Arc::new(r), config());
    let id = engine.plan(flow, BTreeMap::new()).await.expect("plan");
    let end = engine.execute(id, Rescue::Revert).await.expect("execute");
    assert_eq!(end.outcome, Outcome::Error);
    let failure = store.load_plan(id).await.expect("load").steps[0]
        .failure
        .clone()
        .expect("failure");
    assert_eq!(failure.kinds, vec!["timeout"]);
    assert!(
        failure
            .message
            .contains("did not stop when asked and was dropped"),
        "{}",
        failure.message
    );
}

/// A task that waits for work, honouring its cancellation signal.
fn patient(stopped: Arc<AtomicU32>) -> impl Task {
    task_fn(move |ctx: Context| {
        let stopped = stopped.clone();
        async move {
            tokio::select! {
                () = ctx.cancelled() => {
                    stopped.fetch_add(1, Ordering::SeqCst);
                    Err(Failure::new("stopped", "asked to stop"))
                }
                () = tokio::time::sleep(Duration::from_secs(30)) => Ok(json!({})),
            }
        }
    })
}

#[tokio::test]
async fn a_rust_task_is_stopped_by_its_timeout_through_its_cancellation_signal() {
    let (_dir, store) = sqlite();
    let stopped = Arc::new(AtomicU32::new(0));
    let mut r = Registry::new();
    r.register("patient", "1", patient(stopped.clone()));
    let flow = FlowBuilder::linear("t")
        .task("wait", "patient", "1", |t| {
            t.timeout(Duration::from_millis(200))
        })
        .build()
        .expect("valid");
    let engine = Engine::start(store.clone(), Arc::new(r), config());
    let id = engine.plan(flow, BTreeMap::new()).await.expect("plan");
    let started = std::time::Instant::now();
    let end = engine.execute(id, Rescue::Revert).await.expect("execute");
    let took = started.elapsed();
    assert_eq!(end.outcome, Outcome::Error);
    assert_eq!(stopped.load(Ordering::SeqCst), 1, "the task saw the signal");
    let failure = store.load_plan(id).await.expect("load").steps[0]
        .failure
        .clone()
        .expect("failure");
    assert_eq!(failure.kinds, vec!["timeout"]);
    assert!(
        failure.message.contains("the task stopped when asked"),
        "{}",
        failure.message
    );
    assert!(
        took < Duration::from_millis(300),
        "stopped {took:?} after the start"
    );
}

#[tokio::test]
async fn a_rust_task_is_stopped_by_a_halt_through_its_cancellation_signal() {
    let (_dir, store) = sqlite();
    let stopped = Arc::new(AtomicU32::new(0));
    let mut r = Registry::new();
    r.register("patient", "1", patient(stopped.clone()));
    let flow = FlowBuilder::linear("t")
        .task("wait", "patient", "1", |t| t)
        .build()
        .expect("valid");
    let engine = Engine::start(store.clone(), Arc::new(r), config());
    let id = engine.plan(flow, BTreeMap::new()).await.expect("plan");
    let run = tokio::spawn({
        let engine = engine.clone();
        async move { engine.execute(id, Rescue::Revert).await }
    });
    loop {
        let snap = store.load_plan(id).await.expect("load");
        if snap.steps[0].state == step::State::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let halted = std::time::Instant::now();
    engine.halt(id).await.expect("halt");
    let end = run.await.expect("join").expect("execute");
    assert_eq!(end.state, plan::State::Stopped);
    // The task saw the signal at once.
    while stopped.load(Ordering::SeqCst) == 0 {
        assert!(
            halted.elapsed() < Duration::from_millis(100),
            "not stopped within 100 ms"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        store.load_plan(id).await.expect("load").steps[0].state,
        step::State::Cancelled
    );
}

/// Issue 14: an engine lacking a Rust task refuses the plan and leaves it to a process that
/// has it — it used to fail the step with "no task `ghost` at version `7` is registered".
#[tokio::test]
async fn a_plan_needing_an_unregistered_task_is_refused_and_left_untouched() {
    let (_dir, store) = sqlite();
    let flow = FlowBuilder::linear("u")
        .task("x", "ghost", "7", |t| t)
        .build()
        .expect("valid");
    let engine = Engine::start(store.clone(), Arc::new(Registry::new()), config());
    let id = engine.plan(flow, BTreeMap::new()).await.expect("plan");
    match engine.execute(id, Rescue::Revert).await {
        Err(weft_engine::Error::Refused(why)) => {
            assert!(why.contains("ghost@7"), "{why}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let snap = store.load_plan(id).await.expect("load");
    assert_eq!(snap.plan.state, plan::State::Planned);
    assert_eq!(snap.steps[0].state, step::State::Pending);
    assert_eq!(
        store.lock_owner(id).await.expect("owner"),
        None,
        "lock released"
    );
}

#[tokio::test]
async fn missing_inputs_are_refused_before_anything_is_stored() {
    let (_dir, store) = sqlite();
    let flow = FlowBuilder::linear("i")
        .input("n", None)
        .task("x", "add1", "1", |t| t.requires(["n"]))
        .build()
        .expect("valid");
    let engine = Engine::start(store.clone(), Arc::new(Registry::new()), config());
    let err = engine
        .plan(flow, BTreeMap::new())
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("missing required input: n"),
        "{err}"
    );
    assert!(store
        .list_plans(Default::default())
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn a_plan_left_running_by_a_dead_process_is_recovered() {
    let (_dir, store) = sqlite();
    let log = Arc::new(Mutex::new(Vec::new()));
    let flow = FlowBuilder::linear("c")
        .input("n", Some(json!(0)))
        .task("first", "add1", "1", |t| t.requires(["n"]).provides(["a"]))
        .task("second", "add10", "1", |t| {
            t.requires(["a"]).provides(["b"])
        })
        .build()
        .expect("valid");
    let engine = Engine::start(store.clone(), Arc::new(registry(&log)), config());
    let id = engine.plan(flow, BTreeMap::new()).await.expect("plan");
    // What a process that died mid-run leaves behind: first done, second running.
    let at = now_millis();
    let rec = |index, state, output: Option<Value>| StepRecord {
        index,
        name: String::new(),
        state,
        attempt: 1,
        started_at: Some(at),
        ended_at: None,
        output,
        failure: None,
        deadline: None,
        warning: None,
        group: None,
    };
    store
        .apply(
            "test",
            vec![
                Change::plan_state(id, plan::State::Planned, plan::State::Running, at),
                Change::Step {
                    plan: id,
                    from: step::State::Pending,
                    step: rec(0, step::State::Running, None),
                    at,
                },
                Change::Step {
                    plan: id,
                    from: step::State::Running,
                    step: rec(0, step::State::Success, Some(json!({"a": 1}))),
                    at,
                },
                Change::Step {
                    plan: id,
                    from: step::State::Pending,
                    step: rec(1, step::State::Running, None),
                    at,
                },
            ],
        )
        .await
        .expect("apply");
    let end = engine.execute(id, Rescue::Revert).await.expect("execute");
    assert_eq!(end.outcome, Outcome::Success);
    assert_eq!(
        log.lock().expect("log").clone(),
        vec!["run second"],
        "first is not run again"
    );
    let snap = store.load_plan(id).await.expect("load");
    assert_eq!(
        snap.steps[1].output,
        Some(json!({"b": 11})),
        "second got first's stored output"
    );
    assert_eq!(
        snap.steps[1].attempt, 1,
        "an interrupted attempt keeps its number"
    );
    let history = store.history(id).await.expect("history");
    let plan_moves: Vec<(&str, &str)> = history
        .iter()
        .filter(|h| h.step.is_none())
        .map(|h| (h.from.as_str(), h.to.as_str()))
        .collect();
    assert_eq!(
        plan_moves,
        vec![
            ("planned", "running"),
            ("running", "paused"),
            ("paused", "running"),
            ("running", "stopped")
        ]
    );
}

#[tokio::test]
async fn a_plan_locked_by_another_owner_is_not_executed() {
    let (_dir, store) = sqlite();
    let flow = FlowBuilder::linear("l")
        .task("x", "add1", "1", |t| t)
        .build()
        .expect("valid");
    let engine = Engine::start(store.clone(), Arc::new(Registry::new()), config());
    let id = engine.plan(flow, BTreeMap::new()).await.expect("plan");
    store
        .acquire_lock(id, "someone-else".into())
        .await
        .expect("lock");
    let err = engine
        .execute(id, Rescue::Revert)
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("is being executed by someone-else"),
        "{err}"
    );
}

#[tokio::test]
async fn a_rust_task_suspends_and_an_event_completes_it() {
    let (_dir, store) = sqlite();
    let mut r = Registry::new();
    r.register(
        "ask",
        "1",
        task_fn(|ctx| async move {
            ctx.suspend(None);
            Ok(json!({ "asked": true }))
        }),
    );
    let flow = FlowBuilder::linear("s")
        .task("ask", "ask", "1", |t| t.provides(["answer"]))
        .build()
        .expect("valid");
    let engine = Engine::start(store.clone(), Arc::new(r), config());
    let id = engine.plan(flow, BTreeMap::new()).await.expect("plan");
    let running = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.execute(id, Rescue::Revert).await })
    };
    loop {
        if store.load_plan(id).await.expect("load").steps[0].state == step::State::Suspended {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = engine
        .event(id, 0, json!({ "wrong": 1 }), false)
        .await
        .expect_err("provides checked");
    assert!(
        refused.to_string().contains("has no key `answer`"),
        "{refused}"
    );
    engine
        .event(id, 0, json!({ "answer": 42 }), false)
        .await
        .expect("taken");
    let end = running.await.expect("join").expect("execute");
    assert_eq!(end.outcome, Outcome::Success);
    let out = store.load_plan(id).await.expect("load").steps[0]
        .output
        .clone();
    assert_eq!(
        out,
        Some(json!({ "asked": true, "answer": 42 })),
        "the event is merged into the output"
    );
}
