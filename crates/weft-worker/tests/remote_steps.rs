//! Remote steps through the engine, on a SQLite file: a flow whose named task and command run on
//! workers (served with `Worker::run` on the same store), a failure downstream that reverts
//! them through the workers, and a task no worker offers, which fails after the request
//! timeout.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_engine::{task_fn, Config, Engine, Registry, Rescue, RevertContext, Task};
use weft_model::flow::{Command, FlowBuilder, Rescue as FlowRescue};
use weft_model::plan::Outcome;
use weft_model::Failure;
use weft_store::BoxFuture;
use weft_worker::{RemoteConfig, RemoteSteps, Worker};

/// Doubles `n` into `doubled`, and logs what it does and undoes.
struct Double(Arc<Mutex<Vec<String>>>);

impl Task for Double {
    fn execute(&self, ctx: weft_engine::Context) -> BoxFuture<Result<Value, Failure>> {
        let log = self.0.clone();
        Box::pin(async move {
            let n = ctx.inputs.get("n").and_then(Value::as_i64).unwrap_or(0);
            log.lock().expect("log").push(format!("execute {n}"));
            Ok(json!({ "doubled": n * 2 }))
        })
    }

    fn revert(&self, ctx: RevertContext) -> BoxFuture<Result<(), Failure>> {
        let log = self.0.clone();
        Box::pin(async move {
            log.lock().expect("log").push(format!(
                "revert {} after {}",
                ctx.result.map(|r| r.to_string()).unwrap_or_default(),
                ctx.failure.kinds[0]
            ));
            Ok(())
        })
    }
}

async fn sqlite() -> (tempfile::TempDir, weft_store::SharedStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = weft_store::open(&dir.path().join("weft.db").display().to_string())
        .await
        .expect("open");
    (dir, store)
}

fn engine(store: &weft_store::SharedStore, request_timeout: Duration) -> Engine {
    let mut remote = RemoteConfig::new("", Vec::new());
    remote.request_timeout = request_timeout;
    remote.notify_period = Duration::from_millis(200);
    let config = Config {
        remote: Some(Arc::new(RemoteSteps::new(remote))),
        ..Config::default()
    };
    // The engine itself runs none of the tasks.
    Engine::start(store.clone(), Arc::new(Registry::new()), config)
}

fn start_worker(
    store: &weft_store::SharedStore,
    topic: &str,
    tasks: Registry,
) -> tokio::sync::oneshot::Sender<()> {
    let worker = Worker::new(topic, tasks).expect("topic");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let store = store.clone();
    tokio::spawn(async move {
        worker
            .run(store, async {
                let _ = stopped.await;
            })
            .await
    });
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_steps_run_on_workers_and_revert_there() {
    let (dir, store) = sqlite().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let marker = dir.path().join("reverted");
    // The flow's command, offered by the worker that has the same flow.
    let flow = FlowBuilder::linear("remote")
        .version("1")
        .input("n", None)
        .task("double", "double", "1", |t| {
            t.requires(["n"]).provides(["doubled"]).remote()
        })
        .command(
            "echo",
            Command::new(["sh", "-c", "echo \"{\\\"echoed\\\": $WEFT_IN_DOUBLED}\""]).revert([
                "sh".to_string(),
                "-c".to_string(),
                format!("echo \"$WEFT_RESULT\" > {}", marker.display()),
            ]),
            |t| t.requires(["doubled"]).provides(["echoed"]).remote(),
        )
        .command("fail", Command::new(["false"]), |t| t.requires(["echoed"]))
        .on_error(FlowRescue::Revert)
        .build()
        .expect("flow");
    assert_eq!(flow.needs(), Vec::<String>::new());
    assert_eq!(flow.remote_needs(), ["double@1", "remote/echo@1"]);

    let mut tasks = Registry::new();
    tasks.register("double", "1", Double(log.clone()));
    tasks.add_commands(
        &flow,
        Some(weft_engine::logs::LogSink::start(store.clone(), 1 << 20)),
    );
    let _worker = start_worker(&store, "calc", tasks);

    let engine = engine(&store, Duration::from_secs(30));
    let mut ok_flow = flow.clone();
    ok_flow.steps.truncate(2);
    let id = engine
        .plan(ok_flow, BTreeMap::from([("n".to_string(), json!(21))]))
        .await
        .expect("plan");
    let end = engine.execute(id, Rescue::Revert).await.expect("run");
    assert_eq!(end.outcome, Outcome::Success, "{:?}", end.failure);
    assert_eq!(end.values["doubled"], json!(42));
    assert_eq!(end.values["echoed"], json!(42));

    // A later step fails: both remote steps are reverted by the worker.
    let id = engine
        .plan(flow, BTreeMap::from([("n".to_string(), json!(5))]))
        .await
        .expect("plan");
    let end = engine.execute(id, Rescue::Revert).await.expect("run");
    assert_eq!(end.outcome, Outcome::Error);
    let log = log.lock().expect("log").clone();
    assert_eq!(
        log,
        [
            "execute 21",
            "execute 5",
            "revert {\"doubled\":10} after command_failed"
        ]
    );
    let reverted = std::fs::read_to_string(&marker).expect("the command's revert ran");
    assert_eq!(reverted.trim(), "{\"echoed\":10}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_no_worker_offers_fails_after_the_request_timeout() {
    let (_dir, store) = sqlite().await;
    let flow = FlowBuilder::linear("lonely")
        .task("nobody", "nobody", "1", |t| t.remote())
        .build()
        .expect("flow");
    let mut tasks = Registry::new();
    tasks.register("other", "1", task_fn(|_| async { Ok(json!({})) }));
    let _worker = start_worker(&store, "elsewhere", tasks);
    let engine = engine(&store, Duration::from_millis(600));
    let id = engine.plan(flow, BTreeMap::new()).await.expect("plan");
    let end = engine.execute(id, Rescue::Revert).await.expect("run");
    assert_eq!(end.outcome, Outcome::Error);
    let failure = end.failure.expect("a failure");
    assert_eq!(failure.kinds[0], "RequestTimeout", "{failure:?}");
}

#[tokio::test]
async fn a_remote_step_without_a_remote_executor_says_so() {
    let (_dir, store) = sqlite().await;
    let flow = FlowBuilder::linear("f")
        .task("t", "t", "1", |t| t.remote())
        .build()
        .expect("flow");
    let engine = Engine::start(store.clone(), Arc::new(Registry::new()), Config::default());
    let id = engine.plan(flow, BTreeMap::new()).await.expect("plan");
    let end = engine.execute(id, Rescue::Revert).await.expect("run");
    assert_eq!(
        end.failure.map(|f| f.kinds[0].clone()),
        Some("no_remote_executor".into())
    );
}

#[test]
fn worker_topics_are_checked() {
    for bad in ["", "has space", "executor:x", &"x".repeat(201)] {
        let e = Worker::new(bad, Registry::new()).err().expect(bad);
        assert!(e.to_string().contains("invalid worker topic"), "{e}");
    }
    assert!(Worker::new("images.resize-1_a", Registry::new()).is_ok());
}

/// TaskFlow's `EVENT` responses: a remote task's progress is kept with its running step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_task_s_progress_events_reach_its_step() {
    let (_dir, store) = sqlite().await;
    let (release, released) = tokio::sync::watch::channel(false);
    let mut tasks = Registry::new();
    tasks.register(
        "slow",
        "1",
        task_fn(move |ctx| {
            let mut released = released.clone();
            async move {
                let mut details = serde_json::Map::new();
                details.insert("progress".into(), json!(0.5));
                ctx.progress("update_progress", details);
                let _ = released.wait_for(|r| *r).await;
                Ok(json!({}))
            }
        }),
    );
    let _worker = start_worker(&store, "slowpoke", tasks);
    let engine = engine(&store, Duration::from_secs(30));
    let flow = FlowBuilder::linear("progress")
        .task("s", "slow", "1", |t| t.remote())
        .build()
        .expect("flow");
    let id = engine.plan(flow, BTreeMap::new()).await.expect("plan");
    let run = tokio::spawn({
        let engine = engine.clone();
        async move { engine.execute(id, Rescue::Revert).await }
    });
    let mut seen = None;
    for _ in 0..500 {
        let snap = store.load_plan(id).await.expect("load");
        if let Some(event) = snap.steps[0].group.as_ref().and_then(|g| g.event.clone()) {
            seen = Some(event);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let event = seen.expect("the step got the task's event");
    assert_eq!(event.event_type, "update_progress");
    assert_eq!(event.details["progress"], json!(0.5));
    release.send_replace(true);
    let end = run.await.expect("join").expect("run");
    assert_eq!(end.outcome, Outcome::Success);
}
