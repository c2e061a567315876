//! weft's engine: runs execution plans durably.
//!
//! - [`director`]: the pure decision loop (Dynflow's director). It owns the in-memory view of
//!   the plans it executes and answers every input — start, work finished, retry due — with
//!   store changes to persist and work items to run. It does no I/O and reads no clock but the
//!   one it is given, so it is tested without a database.
//! - [`engine`]: the thin shell around it: persists the director's changes (write-ahead: a
//!   step is durable as `running` before it starts, its result before any dependent starts),
//!   then hands work to the [`executor`], runs timers, and tells observers.
//! - [`executor`]: runs one work item: a command in its own process group, or a Rust [`Task`].
//! - [`logs`]: what tasks print, kept in the store by the log pump, capped per stream.
//! - [`metrics`]: what the process counts, for Prometheus (`weft serve --metrics`).
//! - [`process`]: starting commands in process groups, signalling them, and making sure
//!   nothing of a step outlives it (the reaper; leftovers of a dead run).
//! - [`remote`]: remote steps — the [`Remote`] executor the engine sends them to (built by
//!   weft-worker), and the [`CommandTask`]s a worker offers for a flow's commands.
//! - [`traces`]: plans as OpenTelemetry traces, steps as spans, sent to an OTLP collector.
//! - [`task`]: the [`Task`] trait and the [`Registry`] of Rust tasks by name and version;
//!   [`typed`]: tasks of your own serde types, whose shapes flows check when they are built.
//! - [`node`]: a long-lived node (`weft serve`): claims submitted plans, starts delayed ones,
//!   heartbeats, declares dead nodes dead, delivers events and halts from other processes.
//! - [`operator`]: an operator's actions on plans no process is executing.
//! - [`owner`]: who holds a plan's execution lock, and whether that holder is alive.
#![deny(missing_docs)]
// Every `unsafe` block of the engine is in `process` (signals, fork, the process table).
#![deny(unsafe_code)]

pub mod control;
pub mod director;
pub mod engine;
pub mod executor;
mod group;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod operator;
pub mod owner;
#[allow(unsafe_code)]
pub mod process;
pub mod remote;
pub mod task;
pub mod traces;
pub mod typed;

pub use director::{Completion, Intent, PlanEnd, Rescue};
pub use engine::{Config, Engine, Error, Update};
pub use remote::{CommandTask, Remote, RemoteCall, RemoteFactory};
pub use task::{task_fn, Context, Registry, RevertContext, Task};
pub use typed::{typed_fn, TypedFn};
