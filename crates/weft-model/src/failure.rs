//! What went wrong in a step: kinds (most specific first), a message, process details, and an
//! optional cause. Serializes to TaskFlow's failure dict with [`Failure::to_taskflow`].

use serde::{Deserialize, Serialize};

/// The most stderr a failure keeps: its last 4 KiB.
pub const STDERR_TAIL_BYTES: usize = 4096;

/// A failed execution or revert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Kind names, most specific first (`["timeout", "command"]`). Never empty.
    pub kinds: Vec<String>,
    /// One line for people.
    pub message: String,
    /// The exit code of a command that ran to completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that killed a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The last [`STDERR_TAIL_BYTES`] of the command's stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_tail: Option<String>,
    /// What caused this failure, if it wraps another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Box<Failure>>,
}

impl Failure {
    /// A failure of the given kind with a message.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            kinds: vec![kind.into()],
            message: message.into(),
            exit_code: None,
            signal: None,
            stderr_tail: None,
            cause: None,
        }
    }

    /// Adds a more general kind after the existing ones.
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kinds.push(kind.into());
        self
    }

    /// Attaches the tail of stderr, keeping at most [`STDERR_TAIL_BYTES`] on a char boundary.
    pub fn with_stderr(mut self, stderr: &[u8]) -> Self {
        if !stderr.is_empty() {
            self.stderr_tail = Some(tail(stderr, STDERR_TAIL_BYTES));
        }
        self
    }

    /// TaskFlow's failure dict: `exception_str`, `traceback_str`, `exc_type_names`, `causes`.
    pub fn to_taskflow(&self) -> serde_json::Value {
        let mut causes = Vec::new();
        if let Some(c) = &self.cause {
            causes.push(c.to_taskflow());
        }
        serde_json::json!({
            "exception_str": self.message,
            "traceback_str": self.stderr_tail.clone().unwrap_or_default(),
            "exc_type_names": self.kinds,
            "causes": causes,
            "version": 1,
        })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(c) = &self.cause {
            write!(f, ": {c}")?;
        }
        Ok(())
    }
}

/// The last `max` bytes of `bytes` as (lossy) UTF-8, cut on a character boundary.
pub fn tail(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    let text = String::from_utf8_lossy(&bytes[start..]);
    // A cut inside a multi-byte character shows up as a leading replacement character.
    text.trim_start_matches('\u{FFFD}').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_stderr_tail() {
        let long = vec![b'a'; 10_000];
        let f = Failure::new("command", "exited").with_stderr(&long);
        assert_eq!(f.stderr_tail.map(|s| s.len()), Some(STDERR_TAIL_BYTES));
    }

    #[test]
    fn serializes_to_the_taskflow_shape() {
        let mut f = Failure::new("timeout", "took too long").with_kind("command");
        f.cause = Some(Box::new(Failure::new("io", "broken pipe")));
        let d = f.to_taskflow();
        assert_eq!(d["exc_type_names"][0], "timeout");
        assert_eq!(d["exception_str"], "took too long");
        assert_eq!(d["causes"][0]["exception_str"], "broken pipe");
    }
}
