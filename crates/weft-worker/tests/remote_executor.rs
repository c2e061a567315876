//! The executor's loop and workers on every transport — in-process channels, a SQLite file and
//! PostgreSQL: discovery, many requests over two workers, timeouts for a task no worker runs,
//! and stop.

use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weft_engine::{task_fn, Registry};
use weft_model::worker::Action;
use weft_model::PlanId;
use weft_worker::RemoteCall;
use weft_worker::{InProcess, RemoteConfig, RemoteExecutor, Server, StoreTransport, Transport};

fn call(task: &str, n: i64) -> RemoteCall {
    let mut arguments = Map::new();
    arguments.insert("n".into(), json!(n));
    RemoteCall {
        task: task.into(),
        version: "1".into(),
        step: format!("step-{n}"),
        plan: PlanId::new(),
        attempt: 1,
        arguments,
        action: Action::Execute,
        result: None,
        failure: None,
    }
}

fn start_worker(
    transport: &Arc<dyn Transport>,
    topic: &str,
    ran: Arc<AtomicUsize>,
) -> tokio::sync::oneshot::Sender<()> {
    let mut registry = Registry::new();
    registry.register(
        "double",
        "1",
        task_fn(move |ctx| {
            let ran = ran.clone();
            async move {
                ran.fetch_add(1, Ordering::SeqCst);
                let n = ctx.inputs.get("n").and_then(Value::as_i64).unwrap_or(0);
                Ok(json!({ "doubled": n * 2 }))
            }
        }),
    );
    let server = Server::new(topic, Arc::new(registry));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(weft_worker::worker::serve(
        server,
        transport.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    stop
}

async fn requests_spread_over_workers_and_come_back(transport: Arc<dyn Transport>) {
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let _wa = start_worker(&transport, "worker-a", a.clone());
    let _wb = start_worker(&transport, "worker-b", b.clone());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut config = RemoteConfig::new("executor", vec!["worker-a".into(), "worker-b".into()]);
    config.notify_period = Duration::from_millis(200);
    let executor = RemoteExecutor::start(transport.clone(), config).expect("start");
    // TaskFlow's wait_for_workers: both answered a notify.
    for _ in 0..200 {
        if executor.workers().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(executor.workers().len(), 2, "both workers were discovered");
    let runs: Vec<_> = (0..60)
        .map(|n| {
            let e = executor.clone();
            tokio::spawn(async move { e.run(call("double", n)).await })
        })
        .collect();
    for (n, r) in runs.into_iter().enumerate() {
        let out = r.await.expect("joined").expect("succeeded");
        assert_eq!(out, json!({ "doubled": n as i64 * 2 }));
    }
    // Both workers took some (chosen at random among the capable).
    assert_eq!(a.load(Ordering::SeqCst) + b.load(Ordering::SeqCst), 60);
    assert!(a.load(Ordering::SeqCst) > 0 && b.load(Ordering::SeqCst) > 0);
    assert_eq!(executor.workers().len(), 2);
    executor.stop().await;
}

async fn a_task_no_worker_runs_times_out_and_stop_fails_what_is_out(transport: Arc<dyn Transport>) {
    let mut config = RemoteConfig::new("executor", vec![]);
    config.request_timeout = Duration::from_millis(300);
    let executor = RemoteExecutor::start(transport.clone(), config).expect("start");
    let failure = executor
        .run(call("nobody-runs-this", 1))
        .await
        .expect_err("times out");
    assert_eq!(failure.kinds[0], "RequestTimeout");
    // A request out when the executor stops fails as expired.
    let mut long = RemoteConfig::new("executor-2", vec![]);
    long.request_timeout = Duration::from_secs(60);
    let executor = RemoteExecutor::start(transport.clone(), long).expect("start");
    let waiting = {
        let e = executor.clone();
        tokio::spawn(async move { e.run(call("nobody-runs-this", 2)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    executor.stop().await;
    let failure = waiting.await.expect("joined").expect_err("stopped");
    assert_eq!(failure.kinds[0], "RequestTimeout");
    // After stop, nothing more runs.
    assert!(executor.run(call("double", 3)).await.is_err());
}

async fn sqlite() -> (tempfile::TempDir, Arc<dyn Transport>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = weft_store::open(&dir.path().join("weft.db").display().to_string())
        .await
        .expect("open");
    (dir, Arc::new(StoreTransport::new(store)))
}

async fn postgres() -> Arc<dyn Transport> {
    let store = weft_store::open(&weft_testpg::url()).await.expect("open");
    Arc::new(StoreTransport::new(store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_requests_spread_over_workers() {
    requests_spread_over_workers_and_come_back(Arc::new(InProcess::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_timeouts_and_stop() {
    a_task_no_worker_runs_times_out_and_stop_fails_what_is_out(Arc::new(InProcess::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_requests_spread_over_workers() {
    let (_dir, t) = sqlite().await;
    requests_spread_over_workers_and_come_back(t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_timeouts_and_stop() {
    let (_dir, t) = sqlite().await;
    a_task_no_worker_runs_times_out_and_stop_fails_what_is_out(t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_requests_spread_over_workers() {
    requests_spread_over_workers_and_come_back(postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_timeouts_and_stop() {
    a_task_no_worker_runs_times_out_and_stop_fails_what_is_out(postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_mid_task_is_lost_within_its_lease_and_the_retry_runs_elsewhere() {
    let (_dir, transport) = sqlite().await;
    let lease = Duration::from_secs(1);
    // The doomed worker acknowledges and then hangs; its heartbeats stop when it "dies".
    let mut hangs = Registry::new();
    hangs.register(
        "double",
        "1",
        task_fn(|_| async {
            std::future::pending::<()>().await;
            Ok(json!({}))
        }),
    );
    let doomed = tokio::spawn(weft_worker::worker::serve_with_lease(
        Server::new("doomed", Arc::new(hangs)),
        transport.clone(),
        lease,
        std::future::pending(),
    ));
    let mut config = RemoteConfig::new("executor", vec!["doomed".into(), "healthy".into()]);
    config.notify_period = Duration::from_millis(200);
    config.worker_lease = lease;
    let executor = RemoteExecutor::start(transport.clone(), config).expect("start");
    for _ in 0..200 {
        if executor.workers().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let running = {
        let e = executor.clone();
        tokio::spawn(async move { e.run(call("double", 4)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    doomed.abort();
    let started = std::time::Instant::now();
    let lost = running.await.expect("joined").expect_err("lost");
    assert_eq!(lost.kinds[0], "WorkerLost");
    assert!(
        started.elapsed() < lease + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A healthy worker takes the retry (a new attempt).
    let ran = Arc::new(AtomicUsize::new(0));
    let _healthy = start_worker(&transport, "healthy", ran.clone());
    let mut retry = call("double", 4);
    retry.attempt = 2;
    assert_eq!(
        executor.run(retry).await.expect("ran"),
        json!({"doubled": 8})
    );
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    executor.stop().await;
}
