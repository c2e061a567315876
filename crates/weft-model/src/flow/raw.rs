//! What the flow-file parser and the group-table parser share: the raw `[defaults]` and `retry`
//! tables, line numbers for spans, and the checks of command fields (argv, env, cwd).

use super::{Error, ErrorKind};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

/// The `[defaults]` table.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) retry: Option<Spanned<RawRetry>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) kill_timeout: Option<Spanned<String>>,
    pub(super) env: Option<BTreeMap<String, String>>,
    pub(super) idempotent: Option<bool>,
    pub(super) cwd: Option<String>,
    pub(super) executor: Option<Spanned<String>>,
}

/// A `retry` table.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub(super) attempts: Option<u32>,
    pub(super) backoff: Option<String>,
    pub(super) delay: Option<String>,
    pub(super) max_delay: Option<String>,
}

/// Byte offset → 1-based line, by binary search over the offsets where lines start (built
/// once per file: looking a line up is O(log n), not a count from the start of the file).
pub(super) struct Lines(Vec<usize>);

impl Lines {
    pub(super) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Lines(starts)
    }

    pub(super) fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

/// An environment a command can be given: keys non-empty, without `=` or NUL; values without
/// NUL (`{"PATH=/tmp/evil:" = "x"}` would silently set `PATH`).
pub(super) fn check_env(env: &BTreeMap<String, String>) -> Result<(), Error> {
    for (k, v) in env {
        let why = if k.is_empty() {
            Some("an empty variable name".to_string())
        } else if k.contains('=') {
            Some(format!("variable name `{k}` holds `=`"))
        } else if k.contains('\0') || v.contains('\0') {
            Some(format!(
                "variable `{}` holds a NUL byte",
                k.replace('\0', "\\0")
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::new(ErrorKind::Invalid(why)).field("env"));
        }
    }
    Ok(())
}

/// A working directory must exist when the flow is loaded.
pub(super) fn check_cwd(cwd: &Path) -> Result<(), Error> {
    if cwd.is_dir() {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Invalid(format!(
            "working directory {} does not exist (or is no directory)",
            cwd.display()
        )))
        .field("cwd"))
    }
}

/// A command's argument list: an array of strings, the first non-empty, no NUL bytes; a
/// shell string is refused.
pub(super) fn argv(value: &Spanned<toml::Value>, field: &str) -> Result<Vec<String>, Error> {
    match value.get_ref() {
        toml::Value::String(_) => {
            Err(Error::new(ErrorKind::ShellString(field.into())).field(field))
        }
        toml::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    toml::Value::String(s) if s.contains('\0') => {
                        return Err(Error::new(ErrorKind::Invalid(format!(
                            "argument {} holds a NUL byte, which no program can receive",
                            out.len() + 1
                        )))
                        .field(field))
                    }
                    toml::Value::String(s) => out.push(s.clone()),
                    other => {
                        return Err(Error::new(ErrorKind::Invalid(format!(
                            "every argument must be a string, found {}",
                            other.type_str()
                        )))
                        .field(field))
                    }
                }
            }
            if out.is_empty() || out[0].is_empty() {
                return Err(Error::new(ErrorKind::EmptyRun).field(field));
            }
            Ok(out)
        }
        other => Err(Error::new(ErrorKind::Invalid(format!(
            "expected an argument list, found {}",
            other.type_str()
        )))
        .field(field)),
    }
}
