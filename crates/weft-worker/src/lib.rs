//! weft's remote workers (TaskFlow's worker-based execution), being built for issue 16. What is
//! here is the executor's bookkeeping, free of any transport, on the protocol of
//! [`weft_model::worker`]:
//!
//! - [`finder`]: the workers heard from (`NOTIFY` answers), forgotten after a silence, chosen
//!   at random among those that run a task.
//! - [`requests`]: the requests out, each in the seed's state machine — matched to workers,
//!   moved by responses (unknown and stale ones ignored), expired while `WAITING` or
//!   `PENDING`, failed by `stop()`, and failed with `WorkerLost` when their worker is gone.
//! - [`server`]: the worker's side — its `NOTIFY` answer, and how it answers one request
//!   (dropped, `FAILURE` naming the problem, or `RUNNING` then the task's result).
//!
//! - [`transport`]: how messages travel — the [`Transport`] trait, [`InProcess`] channels,
//!   and [`StoreTransport`]: the store's message table (PostgreSQL, SQLite) with wake-ups.
//! - [`worker`]: a worker's loop on a transport (answers `NOTIFY`, runs requests).
//! - [`remote`]: the executor's loop — asks workers what they run, sends them requests,
//!   resolves each with its result or failure, expires, stops.
//!
//! Workers heartbeat through the transport (the store's `workers` rows, on its clock); the
//! executor's loop fails what a worker whose lease lapsed was running with `WorkerLost` —
//! where TaskFlow's engine waits for ever. The `weft worker` command and the engine's remote
//! steps come next.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod finder;
pub mod remote;
pub mod requests;
pub mod server;
pub mod transport;
pub mod worker;

pub use finder::{TopicWorker, WorkerFinder};
pub use remote::{RemoteConfig, RemoteExecutor, RemoteSteps};
pub use requests::{Outstanding, Publish, Reaction, Requests, Settled};
pub use server::{Dropped, Envelope, Server};
pub use transport::{
    InProcess, Kind, Listener, Message, StoreTransport, Transport, TransportError,
};
pub use weft_engine::RemoteCall;
pub use worker::{check_topic, TopicError, Worker};
