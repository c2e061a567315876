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

impl Command {
    /// A command running `argv` (program and arguments; no shell), with nothing else set.
    ///
    /// ```
    /// use weft_model::command::Command;
    /// let c = Command::new(["tar", "czf", "out.tgz", "."]).revert(["rm", "-f", "out.tgz"]);
    /// assert_eq!(c.run[0], "tar");
    /// ```
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> Self {
        Command {
            run: argv.into_iter().map(Into::into).collect(),
            revert: None,
            env: BTreeMap::new(),
            cwd: None,
            warn_exit_codes: Vec::new(),
        }
    }

    /// The command that undoes this one, run when the plan reverts.
    pub fn revert<I: IntoIterator<Item = S>, S: Into<String>>(mut self, argv: I) -> Self {
        self.revert = Some(argv.into_iter().map(Into::into).collect());
        self
    }

    /// An extra environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// The working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Exit codes that mean "done, with a warning".
    pub fn warn_exit_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.warn_exit_codes = codes.into_iter().collect();
        self
    }
}
