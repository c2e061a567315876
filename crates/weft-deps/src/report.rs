//! What `DependencyEngine::report` returns: the engine's state and each manifold's.

use crate::manifold::Access;
use serde::Serialize;
use std::collections::BTreeMap;

/// The state of the engine or of one manifold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Its start was requested and has not finished.
    Starting,
    /// Running.
    Started,
    /// Asked to stop; not stopped yet.
    Stopping,
    /// Not running.
    Stopped,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            State::Starting => "starting",
            State::Started => "started",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
        })
    }
}

/// The engine's live report.
#[derive(Debug, Clone, Serialize)]
pub struct EngineReport {
    /// `started`, `stopping` or `stopped`.
    pub state: State,
    /// The error the engine stopped with, if it did.
    pub error: Option<String>,
    /// Each manifold, by name.
    pub manifolds: BTreeMap<String, ManifoldReport>,
}

/// One manifold in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ManifoldReport {
    /// Its state.
    pub state: State,
    /// Its inputs.
    pub inputs: Vec<String>,
    /// How many times its worker started.
    pub start_count: u64,
    /// When its worker last started (ms since the Unix epoch).
    pub started_at: Option<i64>,
    /// Its last error.
    pub error: Option<String>,
    /// When that error happened (ms since the Unix epoch).
    pub error_at: Option<i64>,
    /// The worker's own report.
    pub report: Option<serde_json::Value>,
    /// The inputs its last start asked for.
    pub resource_log: Vec<Access>,
}
