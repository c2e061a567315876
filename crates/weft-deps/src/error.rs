//! What workers, start functions and the engine say went wrong.

use std::sync::Arc;

/// An error from a worker or a start function. The first three are the seed's sentinels; any
/// other error is [`Error::Failed`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The worker cannot start yet: an input is missing. It is started again when an input
    /// changes, not before. The message says which input and why (not declared, not running,
    /// not exposed) — a bare "dependency not available" is impossible to diagnose — in Juju's
    /// words, which operators grep for: `"db" not running: dependency not available`.
    #[error("{0}: dependency not available")]
    Missing(String),
    /// Restart now (after the bounce delay).
    #[error("restart immediately")]
    Bounce,
    /// Remove the manifold for good.
    #[error("resource permanently unavailable")]
    Uninstall,
    /// Anything else: restarted after the error delay, unless the configuration calls it fatal.
    #[error("{0}")]
    Failed(Arc<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Wraps any error.
    pub fn failed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Failed(Arc::new(e))
    }

    /// An error with just a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Error::Failed(Arc::new(Message(message.into())))
    }
}

#[derive(Debug)]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// Why a manifold could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The engine is stopping or stopped.
    #[error("engine is shutting down")]
    ShuttingDown,
    /// A manifold of that name is installed already.
    #[error("{0:?} manifold already installed")]
    Duplicate(String),
    /// Installing it would make the graph cyclic.
    #[error("cannot install {name:?} manifold: cycle detected at {}", path.join(" -> "))]
    Cycle {
        /// The manifold.
        name: String,
        /// The cycle, as names.
        path: Vec<String>,
    },
}
