//! The executor's bookkeeping and a worker, wired by hand in one process: what a transport
//! will carry, end to end — discovery, dispatch, answers, results, failures, revert.

use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_engine::{task_fn, Registry, RevertContext, Task};
use weft_model::worker::{decode_notify, decode_response, Action};
use weft_model::{Failure, PlanId};
use weft_store::BoxFuture;
use weft_worker::requests::request;
use weft_worker::{Envelope, Reaction, Requests, Server, Settled, WorkerFinder};

/// A task whose revert records what it was given.
struct Undo(Arc<Mutex<Vec<Option<Value>>>>);

impl Task for Undo {
    fn execute(&self, _ctx: weft_engine::Context) -> BoxFuture<Result<Value, Failure>> {
        Box::pin(async { Ok(json!({"made": 1})) })
    }
    fn revert(&self, ctx: RevertContext) -> BoxFuture<Result<(), Failure>> {
        self.0.lock().expect("log").push(ctx.result);
        Box::pin(async { Ok(()) })
    }
}

/// Sends every publishable request to `server` and feeds its answers back; returns what
/// settled.
async fn round(requests: &mut Requests, finder: &WorkerFinder, server: &Server) -> Vec<Settled> {
    let mut settled = Vec::new();
    for p in requests.dispatch(finder, &mut || 0) {
        let envelope = Envelope {
            correlation_id: Some(p.id.clone()),
            reply_to: Some("executor".into()),
            attempt: p.attempt,
            plan: PlanId::new(),
        };
        // Over the wire: every response as JSON, decoded (and checked) on receipt.
        let mut wire = Vec::new();
        server
            .handle(&envelope, &p.message, |r| {
                wire.push(r.to_json());
                std::future::ready(true)
            })
            .await
            .expect("answered");
        for v in wire {
            let response = decode_response(&v).expect("a valid response");
            if let Ok(Some(Reaction::Settled(s))) = requests.on_response(&p.id, p.attempt, response)
            {
                settled.push(s);
            }
        }
    }
    settled
}

#[tokio::test]
async fn requests_run_on_a_worker_and_their_results_come_back() {
    let undone = Arc::new(Mutex::new(Vec::new()));
    let mut registry = Registry::new();
    registry.register(
        "double",
        "1",
        task_fn(|ctx| async move {
            let n = ctx.inputs.get("n").and_then(Value::as_i64).unwrap_or(0);
            Ok(json!({ "doubled": n * 2 }))
        }),
    );
    registry.register("undo", "1", Undo(undone.clone()));
    let server = Server::new("worker-1", Arc::new(registry));
    // Discovery: the worker's NOTIFY answer, as it travels.
    let mut finder = WorkerFinder::new();
    let notify = decode_notify(&serde_json::to_value(server.notify()).expect("json"), true)
        .expect("valid")
        .expect("an answer");
    finder.on_notify(notify, 0);

    let mut requests = Requests::new();
    let mut args = Map::new();
    args.insert("n".into(), json!(21));
    requests.submit(
        "a".into(),
        1,
        request("double", "d", "1", Action::Execute, args),
        0,
        Duration::from_secs(60),
    );
    // Nobody runs `missing@1`: it waits.
    requests.submit(
        "b".into(),
        1,
        request("missing", "m", "1", Action::Execute, Map::new()),
        0,
        Duration::from_secs(60),
    );
    let mut revert = request("undo", "u", "1", Action::Revert, Map::new());
    revert.result = Some(Ok(json!({"made": 1})));
    requests.submit("c".into(), 1, revert, 0, Duration::from_secs(60));

    let settled = round(&mut requests, &finder, &server).await;
    let by_id = |id: &str| settled.iter().find(|s| s.id == id).cloned();
    assert_eq!(
        by_id("a").map(|s| s.result),
        Some(Ok(json!({"doubled": 42})))
    );
    assert_eq!(by_id("c").map(|s| s.event), Some("reverted"));
    assert_eq!(*undone.lock().expect("log"), vec![Some(json!({"made": 1}))]);
    assert!(by_id("b").is_none());
    assert_eq!(requests.len(), 1);
    // It expires after its timeout, as TaskFlow's do.
    let expired = requests.expire(61_000);
    assert!(matches!(&expired[0].result, Err(f) if f.kinds[0] == "RequestTimeout"));
}

#[tokio::test]
async fn a_worker_serves_over_a_transport() {
    use weft_model::worker::decode_notify;
    use weft_worker::{InProcess, Kind, Message, Transport};
    let transport = Arc::new(InProcess::new());
    let mut registry = Registry::new();
    registry.register(
        "double",
        "1",
        task_fn(|ctx| async move {
            let n = ctx.inputs.get("n").and_then(Value::as_i64).unwrap_or(0);
            Ok(json!({ "doubled": n * 2 }))
        }),
    );
    let server = Server::new("worker-1", Arc::new(registry));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(weft_worker::worker::serve(
        server,
        transport.clone() as Arc<dyn Transport>,
        async {
            let _ = stop_rx.await;
        },
    ));
    let mut inbox = transport.listen("executor").expect("listen");
    let send = |topic: &str, kind: Kind, id: Option<&str>, body: Value| {
        transport.send(
            topic,
            Message {
                kind,
                correlation_id: id.map(str::to_string),
                reply_to: Some("executor".into()),
                attempt: 1,
                plan: Some(PlanId::new()),
                body,
            },
        )
    };
    // Discovery.
    let mut sent = false;
    for _ in 0..100 {
        if send("worker-1", Kind::Notify, None, json!({}))
            .await
            .is_ok()
        {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sent, "the worker listens");
    let answer = inbox.next().await.expect("an answer");
    let notify = decode_notify(&answer.body, true)
        .expect("valid")
        .expect("some");
    let mut finder = WorkerFinder::new();
    finder.on_notify(notify, 0);
    // A request, and one that is malformed: both answered, the worker still serving.
    let mut requests = Requests::new();
    let mut args = Map::new();
    args.insert("n".into(), json!(5));
    requests.submit(
        "a".into(),
        1,
        request("double", "d", "1", Action::Execute, args),
        0,
        Duration::from_secs(60),
    );
    for p in requests.dispatch(&finder, &mut || 0) {
        send(&p.topic, Kind::Request, Some(&p.id), p.message)
            .await
            .expect("send");
    }
    send(
        "worker-1",
        Kind::Request,
        Some("junk"),
        json!({"task_cls": 3}),
    )
    .await
    .expect("send");
    let mut settled = None;
    let mut junk_refused = false;
    while settled.is_none() || !junk_refused {
        let m = tokio::time::timeout(Duration::from_secs(5), inbox.next())
            .await
            .expect("answers in time")
            .expect("a message");
        let response = decode_response(&m.body).expect("valid");
        let id = m.correlation_id.clone().unwrap_or_default();
        if id == "junk" {
            junk_refused = m.body["state"] == "FAILURE";
            continue;
        }
        if let Ok(Some(Reaction::Settled(s))) = requests.on_response(&id, m.attempt, response) {
            settled = Some(s);
        }
    }
    assert_eq!(settled.map(|s| s.result), Some(Ok(json!({"doubled": 10}))));
    let _ = stop_tx.send(());
    assert_eq!(serving.await.expect("joined"), Ok(()));
}
