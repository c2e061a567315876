//! weft's model: pure types with no I/O.
//!
//! - [`flow`]: flow definitions — the TOML file format, the Rust builder, and the validated
//!   [`flow::Flow`] both produce, with its dependency graph.
//! - [`plan`] and [`step`]: the state machines of an execution plan and of its steps, each with
//!   the one function that says which transitions are allowed.
//! - [`group`]: groups of tasks under lifecycle hooks, and the progress a running group keeps.
//! - [`command`]: a command task — argv, revert, environment, working directory.
//! - [`shape`]: the fields of a typed task's input or output, read from its serde type.
//! - [`job`]: the job board's rules (TaskFlow's): priorities, job states, who may claim.
//! - [`worker`]: TaskFlow's worker protocol — the request state machine, `NOTIFY` /
//!   `REQUEST` / `RESPONSE` and their checked decoding.
//! - [`limit`]: concurrency and rate limits — flow files' `concurrency` and `queue`, key
//!   templates, rates, the slots a plan or a step holds.
//! - [`failure`]: what went wrong, in a shape that serializes to TaskFlow's failure dict.
//! - [`duration`]: the `"500ms"`, `"10s"`, `"5m"` notation used in flow files.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod command;
pub mod cron;
pub mod duration;
pub mod failure;
pub mod flow;
pub mod group;
pub mod job;
pub mod limit;
pub mod plan;
pub mod schedule;
pub mod shape;
pub mod step;
mod suggest;
pub mod time;
pub mod worker;

pub use failure::Failure;
pub use plan::PlanId;
pub use time::{after, format_millis, now_millis, parse_time, Millis};
