//! The embedding API on real stores: typed tasks, results, errors caught before anything is
//! stored, and handles from a plan id.

use serde::{Deserialize, Serialize};
use weft::prelude::*;
use weft::Error;

#[derive(Serialize, Deserialize)]
struct Numbers {
    a: i64,
    b: i64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Sum {
    sum: i64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Doubled {
    doubled: i64,
}

#[derive(Serialize, Deserialize)]
struct Text {
    sum: String,
}

#[derive(Serialize, Deserialize)]
struct Loud {
    loud: String,
}

fn arithmetic(tasks: &mut Registry) -> (TaskRef, TaskRef) {
    let add = tasks.add(
        "add",
        "1",
        typed_fn(|n: Numbers, _ctx| async move { Ok(Sum { sum: n.a + n.b }) }),
    );
    let double = tasks.add(
        "double",
        "1",
        typed_fn(|s: Sum, _ctx| async move { Ok(Doubled { doubled: s.sum * 2 }) }),
    );
    (add, double)
}

fn flow(add: &TaskRef, double: &TaskRef) -> Flow {
    FlowBuilder::linear("arithmetic")
        .input("a", None)
        .input("b", None)
        .step("add", add, |t| t)
        .step("double", double, |t| t)
        .command(
            "announce",
            Command::new(["sh", "-c", r#"echo '{"announced": true}'"#]),
            |t| t.provides(["announced"]),
        )
        .build()
        .expect("a valid flow")
}

#[derive(Debug, Deserialize, PartialEq)]
struct Everything {
    a: i64,
    sum: i64,
    doubled: i64,
    announced: bool,
}

#[tokio::test]
async fn a_typed_flow_gives_its_result_and_each_steps_output_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tasks = Registry::new();
    let (add, double) = arithmetic(&mut tasks);
    let flow = flow(&add, &double);
    assert_eq!(
        flow.steps[0].requires,
        vec!["a", "b"],
        "from the input's fields"
    );
    assert_eq!(
        flow.steps[1].provides,
        vec!["doubled"],
        "from the output's fields"
    );
    let engine = Engine::builder(dir.path().join("app.db").display().to_string())
        .name("typed-test")
        .registry(tasks)
        .start()
        .await
        .expect("start");
    let plan = engine
        .submit(&flow, Numbers { a: 2, b: 3 })
        .await
        .expect("submit");
    let all: Everything = plan.result().await.expect("result");
    assert_eq!(
        all,
        Everything {
            a: 2,
            sum: 5,
            doubled: 10,
            announced: true
        }
    );
    assert_eq!(
        plan.output::<Sum>("add").await.expect("output"),
        Sum { sum: 5 }
    );
    // The same plan through a handle made from its id.
    let again: Doubled = engine.handle(plan.id()).result().await.expect("result");
    assert_eq!(again, Doubled { doubled: 10 });
    let missing = plan.output::<Sum>("nope").await;
    assert!(
        matches!(&missing, Err(Error::Output(m)) if m.contains("no step `nope`") && m.contains("add, double, announce")),
        "{missing:?}"
    );
    engine.shutdown().await.expect("shutdown");
}

#[test]
fn a_type_mismatch_between_steps_is_refused_when_the_flow_is_built() {
    let mut tasks = Registry::new();
    let (add, _) = arithmetic(&mut tasks);
    let shout = tasks.add(
        "shout",
        "1",
        typed_fn(|t: Text, _ctx| async move {
            Ok(Loud {
                loud: t.sum.to_uppercase(),
            })
        }),
    );
    let err = FlowBuilder::linear("mismatch")
        .input("a", None)
        .input("b", None)
        .step("add", &add, |t| t)
        .step("shout", &shout, |t| t)
        .build()
        .expect_err("sum is an integer, shout takes a string");
    let message = err.to_string();
    assert!(
        message
            .contains("step `shout` takes `sum` as a string, but step `add` provides an integer"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unregistered_task_is_refused_before_anything_is_stored() {
    let engine = Engine::builder("memory:")
        .name("unregistered-test")
        .start()
        .await
        .expect("start");
    let flow = FlowBuilder::linear("typo")
        .task("count", "countt", "1", |t| t)
        .build()
        .expect("flow");
    let err = engine
        .submit(&flow, ())
        .await
        .expect_err("countt is nowhere");
    assert!(
        matches!(&err, Error::Unregistered { task, version } if task == "countt" && version == "1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no task `countt` at version `1`"));
    let plans = engine
        .store()
        .list_plans(weft_store::PlanFilter::default())
        .await
        .expect("list");
    assert!(plans.is_empty(), "nothing stored");
    engine.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn values_that_do_not_fit_a_typed_input_fail_the_step_naming_it() {
    let mut tasks = Registry::new();
    let (add, _) = arithmetic(&mut tasks);
    let flow = FlowBuilder::linear("bad-input")
        .input("a", None)
        .input("b", None)
        .step("add", &add, |t| t)
        .build()
        .expect("flow");
    let engine = Engine::builder("memory:")
        .name("bad-input-test")
        .registry(tasks)
        .start()
        .await
        .expect("start");
    let plan = engine
        .submit(&flow, serde_json::json!({"a": "two", "b": 3}))
        .await
        .expect("submit");
    let err = plan.result::<Sum>().await.expect_err("a is not a number");
    let message = err.to_string();
    assert!(matches!(err, Error::Failed { .. }), "{err:?}");
    assert!(
        message.contains("step `add`") && message.contains("invalid type"),
        "{message}"
    );
    // Inputs the flow does not know are refused before anything is stored.
    let unknown = engine
        .submit(&flow, serde_json::json!({"a": 1, "b": 2, "c": 3}))
        .await
        .expect_err("c is no input");
    assert!(matches!(unknown, Error::Input(_)), "{unknown:?}");
    engine.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_unreachable_store_is_a_clear_error_at_start() {
    let err = Engine::builder("postgres://weft@127.0.0.1:1/nowhere")
        .start()
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(matches!(err, Error::Store(_)), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    let err = Engine::builder("mysql://x")
        .start()
        .await
        .err()
        .expect("no such store");
    assert!(matches!(err, Error::Store(_)), "{err:?}");
}

#[tokio::test]
async fn an_application_posts_jobs_and_its_conductor_runs_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("app.db").display().to_string();
    let mut tasks = Registry::new();
    let (add, double) = arithmetic(&mut tasks);
    let engine = Engine::builder(&url)
        .registry(tasks)
        .conductor(weft::board::ConductorConfig::default())
        .start()
        .await
        .expect("start");
    let board = engine.board();
    let inputs = std::collections::BTreeMap::from([
        ("a".to_string(), serde_json::json!(2)),
        ("b".to_string(), serde_json::json!(3)),
    ]);
    let job = board
        .post(
            "arithmetic",
            flow(&add, &double),
            inputs,
            weft::board::Priority::High,
        )
        .await
        .expect("post");
    assert!(job
        .wait(Some(std::time::Duration::from_secs(30)))
        .await
        .expect("wait"));
    // The job ran as its plan, whose values are there to read.
    let plan = engine.handle(job.record().plan);
    let doubled: Doubled = plan.output("double").await.expect("output");
    assert_eq!(doubled, Doubled { doubled: 10 });
    assert_eq!(board.job_count().await.expect("count"), 0);
    engine.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn submit_once_answers_the_first_plan_for_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tasks = Registry::new();
    let (add, double) = arithmetic(&mut tasks);
    let flow = flow(&add, &double);
    let engine = Engine::builder(dir.path().join("app.db").display().to_string())
        .name("key-test")
        .registry(tasks)
        .start()
        .await
        .expect("start");
    let day = std::time::Duration::from_secs(86_400);
    let first = engine
        .submit_once(&flow, Numbers { a: 2, b: 3 }, "order-7", day)
        .await
        .expect("submit");
    let again = engine
        .submit_once(&flow, Numbers { a: 9, b: 9 }, "order-7", day)
        .await
        .expect("submit again");
    assert_eq!(again.id(), first.id());
    let result: Doubled = again.result().await.expect("the first plan's result");
    assert_eq!(
        result,
        Doubled { doubled: 10 },
        "the first submission's inputs ran"
    );
    let plans = engine
        .store()
        .list_plans(weft_store::PlanFilter::default())
        .await
        .expect("list");
    assert_eq!(plans.len(), 1);
    assert!(engine
        .submit_once(&flow, Numbers { a: 1, b: 1 }, "", day)
        .await
        .is_err());
    engine.shutdown().await.expect("shutdown");
}
