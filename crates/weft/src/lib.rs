//! weft inside your Rust application: durable flows of typed tasks that survive crashes,
//! revert themselves when they fail, and spread over every process sharing one database.
//!
//! Register your tasks, build a flow, start the [`Engine`] on SQLite (one file) or PostgreSQL
//! (many machines), submit, and await the result. If the process is killed mid-plan, the next
//! one started under the same name (or any other node on the database) finishes the plan:
//! completed steps are not run again.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use weft::prelude::*;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order { quantity: u32, price: f64 }
//! #[derive(Serialize, Deserialize)]
//! struct Priced { total: f64 }
//! #[derive(Serialize, Deserialize)]
//! struct Receipt { receipt: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), weft::Error> {
//! let mut tasks = Registry::new();
//! let price = tasks.add("price", "1", typed_fn(|o: Order, _ctx| async move {
//!     Ok(Priced { total: f64::from(o.quantity) * o.price })
//! }));
//! let bill = tasks.add("bill", "1", typed_fn(|p: Priced, _ctx| async move {
//!     Ok(Receipt { receipt: format!("paid {:.2}", p.total) })
//! }));
//! let flow = FlowBuilder::linear("checkout")
//!     .input("quantity", None)
//!     .input("price", None)
//!     .step("price", &price, |t| t)
//!     .step("bill", &bill, |t| t.retry(Retry::attempts(3)))
//!     .build()?;
//!
//! let engine = Engine::builder("memory:").registry(tasks).start().await?;
//! let plan = engine.submit(&flow, Order { quantity: 3, price: 2.5 }).await?;
//! let receipt: Receipt = plan.result().await?;
//! assert_eq!(receipt.receipt, "paid 7.50");
//! engine.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Use `sqlite://app.db` (or a path) for a durable store in one file, `postgres://…` for many
//! machines. Flows can mix Rust and command steps ([`FlowBuilder::command`]). A plan's
//! [`PlanHandle`] can be had again from its id, in another process ([`Engine::handle`]).
//! Several applications and `weft serve` nodes may share one database: each plan runs only
//! on a process that has registered every Rust task it needs.
//!
//! Jobs: [`Engine::board`] is TaskFlow's job board on the same store — post a flow as a job,
//! and a conductor ([`Builder::conductor`], or any `weft serve` node) claims and runs it.
//!
//! This crate gathers what an application needs; the layers beneath are `weft-model` (flows,
//! states), `weft-store` (the stores), `weft-engine` (the director, executor and nodes) and
//! `weft-board` (the job board and conductors).

mod app;
mod error;
mod handle;

pub use app::{Builder, Engine};
pub use error::Error;
pub use handle::{values_of, PlanHandle};

/// The job board and conductors (`weft-board`): TaskFlow's `JobBoard` API.
pub mod board {
    pub use weft_board::*;
}

/// Remote workers (`weft-worker`): run this process's tasks for plans executed elsewhere —
/// [`worker::Worker`] — and TaskFlow's worker protocol underneath.
pub mod worker {
    pub use weft_worker::*;
}

pub use weft_engine::{task_fn, typed_fn, Context, PlanEnd, Registry, Rescue, RevertContext, Task};
pub use weft_model::command::Command;
pub use weft_model::flow::{Flow, FlowBuilder, Retry, TaskRef};
pub use weft_model::plan::{Outcome, State as PlanState};
pub use weft_model::{Failure, PlanId};

/// Everything a typical application uses, in one import: `use weft::prelude::*;`.
pub mod prelude {
    pub use crate::{
        task_fn, typed_fn, Command, Context, Engine, Failure, Flow, FlowBuilder, Outcome,
        PlanHandle, PlanId, Registry, Rescue, Retry, TaskRef,
    };
}
