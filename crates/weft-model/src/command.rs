//! A command task: the program a step runs (and the one that undoes it), with its environment
//! and working directory. Used by flows' command steps and by groups' tasks.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A command task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Program and arguments.
    pub run: Vec<String>,
    /// Program and arguments that undo `run`.
    pub revert: Option<Vec<String>>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// The working directory (absolute once compiled from a file).
    pub cwd: Option<PathBuf>,
    /// Exit codes that mean "done, with a warning": the step succeeds and the plan's result
    /// becomes `warning`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warn_exit_codes: Vec<i32>,
}
