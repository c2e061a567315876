//! What tasks print, as the stores keep it: chunks of a step attempt's stdout or stderr (or its
//! revert's, or a group task's), each at its byte offset in that stream. A stream is capped by
//! its writer (weft-engine's log pump): its head is kept, and its tail as a window that moves —
//! the chunks that fall out of it are dropped — so a reader sees a gap in the offsets where the
//! middle was cut.

use serde::{Deserialize, Serialize};
use weft_model::{Millis, PlanId};

/// Which stream of which run a chunk belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogKey {
    /// The plan.
    pub plan: PlanId,
    /// The step's index.
    pub step: u32,
    /// The step's attempt.
    pub attempt: u32,
    /// A group task's name; empty for the step's own command.
    pub task: String,
    /// `execute` or `revert`.
    pub action: String,
    /// `stdout` or `stderr`.
    pub stream: String,
}

/// Some bytes of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// Whose.
    pub key: LogKey,
    /// Where in the stream its first byte is.
    pub offset: u64,
    /// When it was read.
    pub at: Millis,
    /// The bytes, as printed.
    pub data: Vec<u8>,
}

/// A stored chunk, with the id that orders chunks as they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Increasing in write order, across streams.
    pub id: i64,
    /// The chunk.
    pub chunk: LogChunk,
}

/// Which chunks to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogQuery {
    /// The plan.
    pub plan: PlanId,
    /// Only this step.
    pub step: Option<u32>,
    /// Only this attempt.
    pub attempt: Option<u32>,
    /// Only this stream (`stdout`, `stderr`).
    pub stream: Option<String>,
    /// Only chunks written after the one with this id (following).
    pub after: i64,
    /// At most this many.
    pub limit: u32,
}

impl LogQuery {
    /// Whether `chunk` (with id `id`) is one it asks for.
    pub fn matches(&self, id: i64, chunk: &LogChunk) -> bool {
        id > self.after
            && chunk.key.plan == self.plan
            && self.step.is_none_or(|s| s == chunk.key.step)
            && self.attempt.is_none_or(|a| a == chunk.key.attempt)
            && self.stream.as_ref().is_none_or(|s| *s == chunk.key.stream)
    }
}

/// What one write of logs does: chunks appended, and chunks (by stream and offset) dropped from
/// a tail window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogWrite {
    /// New chunks.
    pub append: Vec<LogChunk>,
    /// Stored chunks to drop: their stream and offset.
    pub drop: Vec<(LogKey, u64)>,
}
