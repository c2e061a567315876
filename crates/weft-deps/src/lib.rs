//! A dependency engine, after Juju's (`juju/worker/dependency`), in async Rust.
//!
//! A [`DependencyEngine`] runs named [`Manifold`]s. Each declares the names of its inputs and how
//! to start a [`Worker`] given access to those inputs' resources; it may expose a resource of its
//! own worker to its dependents. The engine starts every manifold as soon as it is installed and
//! keeps it running: when a worker starts or stops, every dependent is bounced (stopped and
//! started again with a fresh snapshot of its inputs); a worker that fails is restarted after a
//! delay that grows with repeated failures. The errors [`Error::Missing`], [`Error::Bounce`] and
//! [`Error::Uninstall`] steer this, and an error the configuration calls fatal stops the whole
//! engine, whose [`DependencyEngine::wait`] then returns the worst such error.
//!
//! One loop task owns all the engine's state; everything else talks to it with messages (the
//! seed's tickets). The crate depends on nothing else of weft.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod engine;
mod error;
mod manifold;
mod report;
mod worker;

pub use config::EngineConfig;
pub use engine::DependencyEngine;
pub use error::{Error, InstallError};
pub use manifold::{Context, Manifold, Resource};
pub use report::{EngineReport, ManifoldReport, State};
pub use worker::{BoxFuture, Stop, TaskWorker, Worker};
