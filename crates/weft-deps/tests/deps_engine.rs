//! The behaviour Juju's dependency engine is known for, on tokio's paused clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use weft_deps::{
    Context, DependencyEngine, EngineConfig, Error, InstallError, Manifold, Resource, State,
    TaskWorker, Worker,
};

/// Fatal errors in these tests are the ones whose message starts with "fatal".
fn config() -> EngineConfig {
    let mut c =
        EngineConfig::juju(|e| matches!(e, Error::Failed(f) if f.to_string().starts_with("fatal")));
    c.error_delay = Duration::from_secs(3);
    c.bounce_delay = Duration::from_millis(10);
    c
}

/// Ends a probe's worker with the result sent.
type Ender = mpsc::UnboundedSender<Result<(), Error>>;

/// A manifold whose workers are controlled from the test: each start is counted, and the
/// running worker ends with whatever the test sends it.
#[derive(Clone, Default)]
struct Probe {
    starts: Arc<AtomicU32>,
    enders: Arc<Mutex<Vec<Ender>>>,
    seen: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl Probe {
    fn manifold(&self, inputs: &[&str]) -> Manifold {
        let probe = self.clone();
        let names: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        Manifold::new(inputs, move |ctx: Context| {
            let probe = probe.clone();
            let names = names.clone();
            async move {
                let mut seen = HashMap::new();
                for n in &names {
                    let v: String = ctx.get(n)?;
                    seen.insert(n.clone(), v);
                }
                probe.seen.lock().expect("lock").push(seen);
                probe.starts.fetch_add(1, Ordering::SeqCst);
                let (tx, mut rx) = mpsc::unbounded_channel();
                probe.enders.lock().expect("lock").push(tx);
                let worker: Arc<dyn Worker> = TaskWorker::spawn(move |mut stop| async move {
                    tokio::select! {
                        _ = stop.requested() => Ok(()),
                        ended = rx.recv() => ended.unwrap_or(Ok(())),
                    }
                });
                Ok(worker)
            }
        })
        .with_output(move |_w| Ok(Arc::new("resource".to_string()) as Resource))
    }

    fn starts(&self) -> u32 {
        self.starts.load(Ordering::SeqCst)
    }

    /// Ends the latest worker with `result`.
    fn end(&self, result: Result<(), Error>) {
        let enders = self.enders.lock().expect("lock");
        enders
            .last()
            .expect("a worker")
            .send(result)
            .expect("worker alive");
    }
}

/// Lets the engine's tasks run, advancing the paused clock by `d`.
async fn settle(d: Duration) {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(d).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

async fn state(engine: &DependencyEngine, name: &str) -> State {
    engine
        .report()
        .await
        .manifolds
        .get(name)
        .map(|m| m.state)
        .unwrap_or(State::Stopped)
}

#[tokio::test(start_paused = true)]
async fn a_manifold_waits_for_an_input_installed_later_then_starts() {
    let engine = DependencyEngine::new(config()).expect("engine");
    let (a, b) = (Probe::default(), Probe::default());
    engine
        .install("b", b.manifold(&["a"]))
        .await
        .expect("install b");
    settle(Duration::from_millis(50)).await;
    assert_eq!(b.starts(), 0);
    let report = engine.report().await;
    assert_eq!(
        report.manifolds["b"].error.as_deref(),
        Some("\"a\" not running: dependency not available")
    );
    engine
        .install("a", a.manifold(&[]))
        .await
        .expect("install a");
    settle(Duration::from_millis(50)).await;
    assert_eq!((a.starts(), b.starts()), (1, 1));
    assert_eq!(
        b.seen.lock().expect("lock").last().expect("seen")["a"],
        "resource"
    );
    assert_eq!(state(&engine, "b").await, State::Started);
}

#[tokio::test(start_paused = true)]
async fn a_dependency_restart_bounces_its_dependents_and_not_the_reverse() {
    let engine = DependencyEngine::new(config()).expect("engine");
    let (a, b) = (Probe::default(), Probe::default());
    engine.install("a", a.manifold(&[])).await.expect("install");
    engine
        .install("b", b.manifold(&["a"]))
        .await
        .expect("install");
    settle(Duration::from_millis(50)).await;
    assert_eq!((a.starts(), b.starts()), (1, 1));
    b.end(Err(Error::msg("b broke")));
    settle(Duration::from_secs(4)).await;
    assert_eq!(
        (a.starts(), b.starts()),
        (1, 2),
        "a dependent's error leaves its dependency alone"
    );
    a.end(Err(Error::msg("a broke")));
    settle(Duration::from_secs(4)).await;
    assert_eq!(a.starts(), 2);
    assert!(
        b.starts() >= 3,
        "b is bounced when a stops and when it starts again"
    );
    assert_eq!(state(&engine, "b").await, State::Started);
}

#[tokio::test(start_paused = true)]
async fn a_completed_worker_stays_stopped_until_an_input_changes() {
    let engine = DependencyEngine::new(config()).expect("engine");
    let (a, b) = (Probe::default(), Probe::default());
    engine.install("a", a.manifold(&[])).await.expect("install");
    engine
        .install("b", b.manifold(&["a"]))
        .await
        .expect("install");
    settle(Duration::from_millis(50)).await;
    b.end(Ok(()));
    settle(Duration::from_secs(60)).await;
    assert_eq!(b.starts(), 1, "not restarted on a clean exit");
    assert_eq!(state(&engine, "b").await, State::Stopped);
    a.end(Err(Error::Bounce));
    settle(Duration::from_secs(1)).await;
    assert!(b.starts() >= 2, "restarted by its dependency's change");
}

#[tokio::test(start_paused = true)]
async fn missing_waits_bounce_restarts_and_uninstall_removes() {
    let engine = DependencyEngine::new(config()).expect("engine");
    let missing = Arc::new(AtomicU32::new(0));
    let m = missing.clone();
    let never = Manifold::new(&[], move |_ctx| {
        let m = m.clone();
        async move {
            m.fetch_add(1, Ordering::SeqCst);
            Err::<Arc<dyn Worker>, _>(Error::Missing("not today".into()))
        }
    });
    engine.install("never", never).await.expect("install");
    let bouncy = Probe::default();
    engine
        .install("bouncy", bouncy.manifold(&[]))
        .await
        .expect("install");
    settle(Duration::from_secs(30)).await;
    assert_eq!(
        missing.load(Ordering::SeqCst),
        1,
        "Missing is not retried until an input changes"
    );
    bouncy.end(Err(Error::Bounce));
    settle(Duration::from_millis(20)).await;
    assert_eq!(bouncy.starts(), 2, "Bounce restarts after the bounce delay");
    bouncy.end(Err(Error::Uninstall));
    settle(Duration::from_secs(10)).await;
    assert!(
        !engine.report().await.manifolds.contains_key("bouncy"),
        "Uninstall removes the manifold"
    );
    engine
        .install("bouncy", bouncy.manifold(&[]))
        .await
        .expect("reinstalling the name works");
}

#[tokio::test(start_paused = true)]
async fn errors_restart_after_the_error_delay_with_backoff() {
    let engine = DependencyEngine::new(config()).expect("engine");
    let p = Probe::default();
    engine.install("p", p.manifold(&[])).await.expect("install");
    settle(Duration::from_millis(1)).await;
    p.end(Err(Error::msg("flaky")));
    settle(Duration::from_millis(2600)).await;
    assert_eq!(p.starts(), 1, "not before error_delay - 10 %");
    settle(Duration::from_millis(800)).await;
    assert_eq!(p.starts(), 2, "by error_delay + 10 %");
    p.end(Err(Error::msg("flaky")));
    // Second failure in a row: 3 s × 1.2 = 3.6 s (±10 %).
    settle(Duration::from_millis(3200)).await;
    assert_eq!(p.starts(), 2, "the delay grew");
    settle(Duration::from_millis(800)).await;
    assert_eq!(p.starts(), 3);
    let report = engine.report().await;
    assert_eq!(report.manifolds["p"].error.as_deref(), Some("flaky"));
    assert!(report.manifolds["p"].error_at.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_stops_everything_and_wait_returns_the_worst() {
    let mut c = config();
    let calls = Arc::new(AtomicU32::new(0));
    let k = calls.clone();
    c.worst_error = Some(Arc::new(move |a: Error, b: Error| {
        k.fetch_add(1, Ordering::SeqCst);
        if a.to_string() > b.to_string() {
            a
        } else {
            b
        }
    }));
    c.filter = Some(Arc::new(|e| Error::msg(format!("filtered: {e}"))));
    let engine = DependencyEngine::new(c).expect("engine");
    let (a, b) = (Probe::default(), Probe::default());
    engine.install("a", a.manifold(&[])).await.expect("install");
    engine.install("b", b.manifold(&[])).await.expect("install");
    settle(Duration::from_millis(10)).await;
    a.end(Err(Error::msg("fatal: a disk on fire")));
    b.end(Err(Error::msg("fatal: b network gone")));
    let result = tokio::time::timeout(Duration::from_secs(5), engine.wait())
        .await
        .expect("engine stops");
    assert_eq!(
        result.expect_err("fatal").to_string(),
        "filtered: fatal: b network gone",
        "the worst, filtered"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "WorstError judged the two fatal errors"
    );
    let report = engine.report().await;
    assert_eq!(
        report.state,
        State::Stopped,
        "the report still answers after the engine stopped"
    );
    assert_eq!(report.manifolds["b"].state, State::Stopped);
    assert!(matches!(
        engine.install("c", a.manifold(&[])).await,
        Err(InstallError::ShuttingDown)
    ));
}

#[tokio::test(start_paused = true)]
async fn install_refuses_duplicates_and_cycles() {
    let engine = DependencyEngine::new(config()).expect("engine");
    let p = Probe::default();
    engine
        .install("a", p.manifold(&["c"]))
        .await
        .expect("install");
    engine
        .install("b", p.manifold(&["a"]))
        .await
        .expect("install");
    assert_eq!(
        engine.install("a", p.manifold(&[])).await,
        Err(InstallError::Duplicate("a".into()))
    );
    let err = engine
        .install("c", p.manifold(&["b"]))
        .await
        .expect_err("cycle");
    assert_eq!(
        err.to_string(),
        "cannot install \"c\" manifold: cycle detected at c -> b -> a -> c"
    );
}

#[tokio::test(start_paused = true)]
async fn get_says_why_an_input_is_unavailable() {
    let engine = DependencyEngine::new(config()).expect("engine");
    engine
        .install(
            "quiet",
            Manifold::new(&[], |_ctx| async {
                Ok(TaskWorker::idle() as Arc<dyn Worker>)
            }),
        )
        .await
        .expect("install");
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let kept: Arc<Mutex<Option<Context>>> = Arc::default();
    let k = kept.clone();
    let asker = Manifold::new(&["quiet", "absent"], move |ctx: Context| {
        let (s, k) = (s.clone(), k.clone());
        async move {
            for name in ["undeclared", "absent", "quiet"] {
                let e = ctx.get::<String>(name).expect_err("unavailable");
                s.lock().expect("lock").push(e.to_string());
            }
            assert!(ctx.exists("quiet").is_ok());
            *k.lock().expect("lock") = Some(ctx);
            Ok(TaskWorker::idle() as Arc<dyn Worker>)
        }
    });
    settle(Duration::from_millis(10)).await;
    engine.install("asker", asker).await.expect("install");
    settle(Duration::from_millis(10)).await;
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![
            "\"undeclared\" not declared: dependency not available",
            "\"absent\" not running: dependency not available",
            "\"quiet\" not exposed: dependency not available",
        ]
    );
    let ctx = kept.lock().expect("lock").take().expect("kept");
    let late = ctx.get::<String>("quiet").expect_err("expired");
    assert_eq!(
        late.to_string(),
        "expired context: cannot be used outside Start func"
    );
    let log = &engine.report().await.manifolds["asker"].resource_log;
    assert_eq!(log.len(), 4, "every access is logged: {log:?}");
}

#[tokio::test(start_paused = true)]
async fn the_report_follows_running_stopping_and_stopped() {
    let engine = DependencyEngine::new(config()).expect("engine");
    let slow_stop = Manifold::new(&[], |_ctx| async {
        let w: Arc<dyn Worker> = TaskWorker::spawn(|mut stop| async move {
            stop.requested().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        });
        Ok(w)
    });
    engine.install("slow", slow_stop).await.expect("install");
    settle(Duration::from_millis(10)).await;
    let r = engine.report().await;
    assert_eq!(
        (
            r.state,
            r.manifolds["slow"].state,
            r.manifolds["slow"].start_count
        ),
        (State::Started, State::Started, 1)
    );
    engine.kill();
    settle(Duration::from_millis(10)).await;
    let r = engine.report().await;
    assert_eq!(
        (r.state, r.manifolds["slow"].state),
        (State::Stopping, State::Stopping)
    );
    engine.wait().await.expect("clean stop");
    assert_eq!(engine.report().await.state, State::Stopped);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_manifolds_in_a_chain_and_in_a_fan_start_and_stop() {
    let engine = DependencyEngine::new(config()).expect("engine");
    let idle = |inputs: &[&str]| {
        Manifold::new(inputs, |_ctx| async {
            Ok(TaskWorker::idle() as Arc<dyn Worker>)
        })
        .with_output(|_w| Ok(Arc::new(()) as Resource))
    };
    engine.install("root", idle(&[])).await.expect("install");
    let mut previous = "root".to_string();
    for i in 0..1000 {
        let name = format!("chain{i}");
        engine
            .install(&name, idle(&[previous.as_str()]))
            .await
            .expect("install");
        previous = name;
    }
    for i in 0..1000 {
        engine
            .install(&format!("fan{i}"), idle(&["root"]))
            .await
            .expect("install");
    }
    settle(Duration::from_secs(30)).await;
    let report = engine.report().await;
    assert_eq!(report.manifolds.len(), 2001);
    assert!(
        report.manifolds.values().all(|m| m.state == State::Started),
        "all started"
    );
    engine.kill();
    tokio::time::timeout(Duration::from_secs(30), engine.wait())
        .await
        .expect("stops")
        .expect("clean");
    assert!(engine
        .report()
        .await
        .manifolds
        .values()
        .all(|m| m.state == State::Stopped));
}

#[test]
fn an_invalid_configuration_is_refused_by_name() {
    let mut c = config();
    c.worst_error = None;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        assert_eq!(
            DependencyEngine::new(c).err().as_deref(),
            Some("invalid config: WorstError not specified")
        );
        // Juju's words, which operators grep for.
        let mut c = config();
        c.is_fatal = None;
        assert_eq!(
            DependencyEngine::new(c).err().as_deref(),
            Some("invalid config: IsFatal not specified")
        );
        let mut c = config();
        c.backoff_factor = 0.9;
        assert_eq!(
            DependencyEngine::new(c).err().as_deref(),
            Some("invalid config: BackoffFactor 0.9 must be >= 1")
        );
    });
}

#[tokio::test(start_paused = true)]
async fn kill_stops_dependents_before_what_they_depend_on() {
    let engine = DependencyEngine::new(config()).expect("engine");
    let order: Arc<Mutex<Vec<String>>> = Arc::default();
    let recording = |name: &'static str, inputs: &[&str], order: &Arc<Mutex<Vec<String>>>| {
        let order = order.clone();
        Manifold::new(inputs, move |_ctx| {
            let order = order.clone();
            async move {
                let w: Arc<dyn Worker> = TaskWorker::spawn(move |mut stop| async move {
                    stop.requested().await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    order.lock().expect("lock").push(name.to_string());
                    Ok(())
                });
                Ok(w)
            }
        })
        .with_output(|_| Ok(Arc::new(()) as Resource))
    };
    engine
        .install("store", recording("store", &[], &order))
        .await
        .expect("install");
    engine
        .install("director", recording("director", &["store"], &order))
        .await
        .expect("install");
    engine
        .install("http", recording("http", &["director", "store"], &order))
        .await
        .expect("install");
    settle(Duration::from_millis(100)).await;
    engine.kill();
    engine.wait().await.expect("clean");
    assert_eq!(
        *order.lock().expect("lock"),
        vec!["http", "director", "store"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_manifolds_filter_rewrites_its_workers_errors() {
    let engine = DependencyEngine::new(config()).expect("engine");
    let p = Probe::default();
    // "transient" failures are turned into Bounce: restarted after the bounce delay, not the
    // error delay; and a start error is filtered the same way.
    let filtered = p.manifold(&[]).with_filter(|e| match e {
        Error::Failed(f) if f.to_string() == "transient" => Error::Bounce,
        other => other,
    });
    engine.install("p", filtered).await.expect("install");
    settle(Duration::from_millis(1)).await;
    p.end(Err(Error::msg("transient")));
    settle(Duration::from_millis(20)).await;
    assert_eq!(p.starts(), 2, "restarted after the bounce delay");
    let report = engine.report().await;
    assert_eq!(
        report.manifolds["p"].error.as_deref(),
        Some("restart immediately"),
        "the filtered error is reported"
    );
}
