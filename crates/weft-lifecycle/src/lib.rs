//! Nomad's task lifecycle (`client/allocrunner/tasklifecycle`) in async Rust: a [`Gate`] per
//! stage and a [`Coordinator`] that opens and closes them as the tasks of a group change state.
//!
//! A group's tasks are sorted into stages by their lifecycle hook: prestart (ephemeral, or a
//! sidecar that keeps running), main (no hook), poststart (ephemeral or sidecar) and poststop.
//! The coordinator moves `init → prestart → main → poststart → wait_alloc → poststop` — and to
//! `poststop` from anywhere once every non-poststop task is dead — and a task runner waits on
//! [`Coordinator::start_condition_for_task`] before starting its task. Beyond Nomad, a prestart
//! sidecar must also be *ready* (its probe passed) before main may start.
//!
//! The crate depends on nothing else of weft.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod coordinator;
mod gate;

pub use coordinator::{Coordinator, Hook, Stage, State, TaskSpec, TaskState};
pub use gate::Gate;
