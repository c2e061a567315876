//! How the durable backends hold values as text (JSON, state names) and read them back, and
//! the limits they share: one definition for SQLite and PostgreSQL alike.

use crate::{Error, Result};

/// The most requests one writer transaction takes, so that a flood still gets answered
/// promptly.
pub(crate) const MAX_BATCH: usize = 4096;

/// The most reads running at once; more wait their turn rather than each taking a thread and
/// a connection (with its page cache) of their own.
pub(crate) const MAX_READERS: usize = 4;

/// A stored JSON value; a value that does not parse is a corrupt store, naming `what`.
pub(crate) fn json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::Corrupt(format!("stored {what} does not parse: {e}")))
}

/// A value as stored JSON.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Backend(format!("cannot serialize: {e}")))
}

/// A stored state name; an unknown one is a corrupt store.
pub(crate) fn parse_state<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(Error::Corrupt)
}
