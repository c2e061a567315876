//! weft's job board and conductors: TaskFlow's jobboard (`taskflow.jobs.base`) over weft's
//! store, so that a fleet of nodes sharing one database pulls work from one board.
//!
//! - [`JobBoard`] and [`Job`]: the seed's operations with its names — `post`, `claim`,
//!   `consume`, `abandon`, `trash`, `find_owner`, `iterjobs`, `wait`, `job_count`,
//!   `register_entity`, `Job::wait`, `POSTED` / `REMOVAL` notifications — and its errors (`NotFound`, `UnclaimableJob`,
//!   `JobFailure`, as [`weft_model::job::BoardError`]). Jobs come most urgent first, oldest
//!   first within a priority.
//! - [`conductor`]: the manifold a node runs to claim jobs and run their flows as plans.
//!
//! The rules (who may claim, consume, abandon, trash; where a job goes when a claim ends) are
//! [`weft_model::job`]'s; the stores keep jobs, their history and claims (see
//! [`weft_store::jobs`]). A claim lives as long as its owner's lease: a node declared dead
//! loses its claims, and every later write of a claim is fenced by its attempt number.
//!
//! ```no_run
//! # async fn demo(store: weft_store::SharedStore, flow: weft_model::flow::Flow) -> Result<(), weft_store::Error> {
//! use weft_board::JobBoard;
//! use weft_model::job::Priority;
//! let board = JobBoard::new("main", store);
//! let job = board.post("nightly", flow, Default::default(), Priority::High).await?;
//! let mine = board.claim(&job, "worker-1").await?;
//! // … do the work …
//! board.consume(&mine, "worker-1").await?;
//! assert!(job.wait(None).await?);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod board;
pub mod conductor;

pub use board::{Job, JobBoard, Notification, Result};
pub use conductor::ConductorConfig;
pub use weft_model::job::{BoardError, JobId, Priority, State};
