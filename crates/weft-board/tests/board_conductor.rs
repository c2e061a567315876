//! The board's API and a conductor on a real node, on a real SQLite file and on PostgreSQL.

use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_board::{conductor, BoardError, ConductorConfig, JobBoard, Priority, State};
use weft_engine::node::{Node, NodeConfig, Opener};
use weft_engine::{task_fn, Registry};
use weft_model::flow::{Flow, FlowBuilder};
use weft_model::Failure;
use weft_store::SharedStore;

type Counts = Arc<Mutex<HashMap<String, u32>>>;

fn sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("weft.db").display().to_string();
    (dir, url)
}

/// A flow of one Rust task that counts, by its input `key`, how often it ran.
fn counting_flow() -> Flow {
    FlowBuilder::linear("count")
        .input("key", None)
        .task("count", "count", "1", |t| t.requires(["key"]))
        .build()
        .expect("flow")
}

fn registry(counts: &Counts) -> Registry {
    let mut r = Registry::new();
    let c = counts.clone();
    r.register(
        "count",
        "1",
        task_fn(move |ctx| {
            let c = c.clone();
            async move {
                let key = ctx.inputs["key"].as_str().unwrap_or_default().to_string();
                *c.lock().expect("counts").entry(key).or_default() += 1;
                Ok(json!({}))
            }
        }),
    );
    r.register(
        "fail",
        "1",
        task_fn(|_| async { Err(Failure::new("boom", "it broke")) }),
    );
    r
}

/// Starts a node with a conductor; returns a stop handle and the node's task.
async fn start_node(
    url: &str,
    name: &str,
    counts: &Counts,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), weft_engine::Error>>,
) {
    let url = url.to_string();
    let opener: Opener = Arc::new(move || {
        let url = url.clone();
        Box::pin(async move { weft_store::open(&url).await })
    });
    let registry = registry(counts);
    let capabilities = registry.capabilities();
    let mut config = NodeConfig::new(name);
    config.lease = Duration::from_secs(2);
    let node = Node::start(opener, Arc::new(registry), config)
        .await
        .expect("node");
    node.manifolds()
        .install(
            "conductor",
            conductor::manifold(
                node.id().to_string(),
                capabilities,
                ConductorConfig {
                    max_simultaneous_jobs: 8,
                    ..ConductorConfig::default()
                },
            ),
        )
        .await
        .expect("install");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(node.run(async {
        let _ = stopped.await;
    }));
    (stop, running)
}

async fn board(url: &str) -> JobBoard {
    let store: SharedStore = weft_store::open(url).await.expect("open");
    JobBoard::new("test", store)
}

async fn conductors_run_every_job_once_and_consume_it(url: String) {
    let counts: Counts = Arc::default();
    let board = board(&url).await;
    let mut jobs = Vec::new();
    for i in 0..40 {
        let priority = Priority::ALL[i % 5];
        let inputs = BTreeMap::from([("key".to_string(), json!(format!("k{i}")))]);
        jobs.push(
            board
                .post(format!("job-{i}"), counting_flow(), inputs, priority)
                .await
                .expect("post"),
        );
    }
    // A job whose flow fails is consumed all the same (TaskFlow's conductor does so).
    let failing = FlowBuilder::linear("fails")
        .task("fail", "fail", "1", |t| t)
        .build()
        .expect("flow");
    let bad = board
        .post("bad", failing, BTreeMap::new(), Priority::Normal)
        .await
        .expect("post");
    let (stop, node) = start_node(&url, "conductor-a", &counts).await;
    for job in jobs.iter().chain([&bad]) {
        assert!(
            job.wait(Some(Duration::from_secs(30))).await.expect("wait"),
            "{job:?} completes"
        );
    }
    let _ = stop.send(());
    node.await.expect("join").expect("node ran");
    let counts = counts.lock().expect("counts").clone();
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert_eq!(board.job_count().await.expect("count"), 0);
    let history = board.history(&bad).await.expect("history");
    assert_eq!(history.last().map(|t| t.to), Some(State::Complete));
    assert!(board.trashed().await.expect("trash").is_empty());
}

async fn waiting_for_jobs_follows_taskflows_board(url: String) {
    let board = board(&url).await;
    // test_wait_timeout: an empty board expires with NotFound.
    let e = board
        .wait(Some(Duration::from_millis(50)))
        .await
        .expect_err("nothing posted");
    assert!(matches!(e, weft_store::Error::Job(BoardError::NotFound(_))));
    // test_wait_arrival: a job posted while waiting ends the wait.
    let poster = board.clone();
    let posting = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        poster
            .post(
                "late",
                counting_flow(),
                BTreeMap::from([("key".to_string(), json!("x"))]),
                Priority::Normal,
            )
            .await
            .expect("post")
    });
    let found = board
        .wait(Some(Duration::from_secs(10)))
        .await
        .expect("a job came");
    let job = posting.await.expect("posted");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id(), job.id());
    // Job::wait: false until consumed, true after.
    assert!(!job
        .wait(Some(Duration::from_millis(30)))
        .await
        .expect("wait"));
    let mine = board.claim(&job, "me").await.expect("claim");
    assert_eq!(
        board.find_owner(&job).await.expect("owner").as_deref(),
        Some("me")
    );
    board.consume(&mine, "me").await.expect("consume");
    assert!(job.wait(Some(Duration::from_secs(1))).await.expect("wait"));
    assert_eq!(board.find_owner(&job).await.expect("owner"), None);
}

async fn posted_and_removal_are_notified(url: String) {
    let board = board(&url).await;
    let mut told = board.notifications().expect("a durable store sends hints");
    // The listener is in place once the first hint (sent on connecting) is through.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while told.try_recv().is_ok() {}
    let inputs = BTreeMap::from([("key".to_string(), json!("n"))]);
    let job = board
        .post("n", counting_flow(), inputs, Priority::Normal)
        .await
        .expect("post");
    let posted = tokio::time::timeout(Duration::from_secs(5), told.recv())
        .await
        .expect("told in time");
    assert_eq!(posted, Some(weft_board::Notification::Posted));
    let mine = board.claim(&job, "me").await.expect("claim");
    board.consume(&mine, "me").await.expect("consume");
    let removal = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match told.recv().await {
                Some(weft_board::Notification::Removal) | None => return,
                Some(_) => {}
            }
        }
    })
    .await;
    assert!(removal.is_ok(), "REMOVAL was not told");
}

async fn a_job_is_refused_when_its_inputs_do_not_fit(url: String) {
    let board = board(&url).await;
    let e = board
        .post("no-key", counting_flow(), BTreeMap::new(), Priority::Normal)
        .await
        .expect_err("missing input");
    assert!(e.to_string().contains("key"), "{e}");
    assert_eq!(board.job_count().await.expect("count"), 0);
}

mod sqlite {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conductors_run_every_job_once_and_consume_it() {
        let (_dir, url) = sqlite();
        super::conductors_run_every_job_once_and_consume_it(url).await;
    }

    #[tokio::test]
    async fn waiting_for_jobs_follows_taskflows_board() {
        let (_dir, url) = sqlite();
        super::waiting_for_jobs_follows_taskflows_board(url).await;
    }

    #[tokio::test]
    async fn posted_and_removal_are_notified() {
        let (_dir, url) = sqlite();
        super::posted_and_removal_are_notified(url).await;
    }

    #[tokio::test]
    async fn a_job_is_refused_when_its_inputs_do_not_fit() {
        let (_dir, url) = sqlite();
        super::a_job_is_refused_when_its_inputs_do_not_fit(url).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conductors_run_every_job_once_and_consume_it() {
        super::conductors_run_every_job_once_and_consume_it(weft_testpg::url()).await;
    }

    #[tokio::test]
    async fn waiting_for_jobs_follows_taskflows_board() {
        super::waiting_for_jobs_follows_taskflows_board(weft_testpg::url()).await;
    }

    #[tokio::test]
    async fn posted_and_removal_are_notified() {
        super::posted_and_removal_are_notified(weft_testpg::url()).await;
    }
}
