//! Routing by capability: two applications share one SQLite file, each registering a task the
//! other lacks. A plan submitted by either runs where its task is — here two engines in one
//! process stand for the two applications.
//!
//! ```sh
//! cargo run -p weft --example routing -- routing.db
//! ```

use serde::{Deserialize, Serialize};
use weft::prelude::*;

#[derive(Serialize, Deserialize)]
struct Text {
    text: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Shouted {
    shouted: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reversed {
    reversed: String,
}

/// An application with the one task `add` registers, under its own node name.
async fn application(
    db: &str,
    node: &str,
    add: impl FnOnce(&mut Registry) -> TaskRef,
) -> Result<(Engine, TaskRef), weft::Error> {
    let mut tasks = Registry::new();
    let task = add(&mut tasks);
    let engine = Engine::builder(db)
        .name(node)
        .registry(tasks)
        .start()
        .await?;
    Ok((engine, task))
}

#[tokio::main]
async fn main() -> Result<(), weft::Error> {
    let db = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "routing.db".into());
    let (shouter, shout) = application(&db, "shouter", |r| {
        r.add(
            "shout",
            "1",
            typed_fn(|t: Text, _ctx| async move {
                Ok(Shouted {
                    shouted: t.text.to_uppercase(),
                })
            }),
        )
    })
    .await?;
    let (reverser, reverse) = application(&db, "reverser", |r| {
        r.add(
            "reverse",
            "1",
            typed_fn(|t: Text, _ctx| async move {
                Ok(Reversed {
                    reversed: t.text.chars().rev().collect(),
                })
            }),
        )
    })
    .await?;
    let flow = |task: &TaskRef| {
        FlowBuilder::linear(format!("{}-it", task.name))
            .input("text", None)
            .step(task.name.clone(), task, |t| t)
            .build()
    };
    // Each application submits the flow it cannot run itself: the store routes it.
    let text = || Text {
        text: "weft".into(),
    };
    let shouted: Shouted = reverser
        .submit(&flow(&shout)?, text())
        .await?
        .result()
        .await?;
    let reversed: Reversed = shouter
        .submit(&flow(&reverse)?, text())
        .await?
        .result()
        .await?;
    println!("{shouted:?} (ran on the shouter), {reversed:?} (ran on the reverser)");
    shouter.shutdown().await?;
    reverser.shutdown().await
}
