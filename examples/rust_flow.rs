//! Flows in Rust: tasks implementing `Task`, registered by name and version, composed with the
//! builder (linear, unordered and graph flows with requires / provides), run durably on the
//! embedded SQLite store.
//!
//!     cargo run -p weft-engine --example rust_flow
//!
//! The `charge` step fails on purpose on its first attempt, and `ship` always fails, so the
//! plan shows retry and then revert: `reserve` is undone.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_engine::{task_fn, Config, Context, Engine, Registry, Rescue, RevertContext, Task};
use weft_model::flow::{FlowBuilder, Retry};
use weft_model::Failure;
use weft_store::BoxFuture;

/// A task with an undo: reserves stock, and releases it on revert.
struct Reserve;

impl Task for Reserve {
    fn execute(&self, ctx: Context) -> BoxFuture<Result<Value, Failure>> {
        Box::pin(async move {
            let items = ctx.inputs.get("items").and_then(Value::as_u64).unwrap_or(0);
            println!("  reserve: holding {items} items");
            Ok(json!({ "reservation": format!("R-{items}") }))
        })
    }

    fn revert(&self, ctx: RevertContext) -> BoxFuture<Result<(), Failure>> {
        Box::pin(async move {
            println!(
                "  reserve: releasing {} because {}",
                ctx.result.unwrap_or(Value::Null),
                ctx.failure
            );
            Ok(())
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::new();
    registry
        .register("reserve", "1", Reserve)
        .register(
            "price",
            "1",
            task_fn(|ctx| async move {
                let items = ctx.inputs["items"].as_u64().unwrap_or(0);
                Ok(json!({ "total": items * 250 }))
            }),
        )
        .register(
            "charge",
            "1",
            task_fn(|ctx| async move {
                if ctx.attempt == 1 {
                    return Err(Failure::new(
                        "card_declined",
                        "the bank timed out; try again",
                    ));
                }
                println!(
                    "  charge: {} cents on attempt {}",
                    ctx.inputs["total"], ctx.attempt
                );
                Ok(json!({ "receipt": "RC-1" }))
            }),
        )
        .register(
            "ship",
            "1",
            task_fn(|_| async { Err(Failure::new("no_courier", "no courier available")) }),
        );

    // reserve and price need nothing from each other: an unordered subflow runs them in
    // parallel. charge needs both (data flow); ship comes after charge (linear).
    let prepare = FlowBuilder::unordered("prepare")
        .task("reserve", "reserve", "1", |t| {
            t.requires(["items"]).provides(["reservation"])
        })
        .task("price", "price", "1", |t| {
            t.requires(["items"]).provides(["total"])
        });
    let flow = FlowBuilder::linear("order")
        .input("items", None)
        .subflow("prepare", prepare, |t| t)
        .task("charge", "charge", "1", |t| {
            t.requires(["total", "reservation"])
                .provides(["receipt"])
                .retry(Retry {
                    attempts: 3,
                    delay: std::time::Duration::from_millis(50),
                    ..Retry::default()
                })
        })
        .task("ship", "ship", "1", |t| t.requires(["receipt"]))
        .build()?;

    let db = std::env::temp_dir().join("weft-rust-example.db");
    let store = weft_store::open(&format!("sqlite://{}", db.display())).await?;
    let engine = Engine::start(store.clone(), Arc::new(registry), Config::default());
    let id = engine
        .plan(flow, BTreeMap::from([("items".to_string(), json!(3))]))
        .await?;
    println!("plan {id}");
    let end = engine.execute(id, Rescue::Revert).await?;
    println!("ended {} with result {}", end.state, end.outcome);
    for s in store.load_plan(id).await?.steps {
        println!("  {:<16} {:<9} attempt {}", s.name, s.state, s.attempt);
    }
    println!(
        "inspect it with: weft plans show {id} --db {}",
        db.display()
    );
    Ok(())
}
