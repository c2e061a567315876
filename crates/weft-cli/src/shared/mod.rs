//! What the subcommands share: the options every command takes, argument parsers, the
//! failure type and its exit codes, writing to stdout, and — in the submodules — executing a
//! plan in the foreground, lock owners, progress and text views. Subcommands import from here,
//! never from one another.

pub(crate) mod capable;
pub(crate) mod foreground;
pub(crate) mod metrics;
pub(crate) mod progress;
pub(crate) mod schedule;
pub(crate) mod view;
pub(crate) mod waiting;
pub(crate) mod workers;

use clap::Args;
use std::time::Duration;
use weft_model::{duration, plan};

/// Options every command that touches the store takes.
#[derive(Debug, Args, Clone)]
pub(crate) struct Global {
    /// The store: `postgres://USER:PASSWORD@HOST:PORT/DB` (many nodes; pass the password in
    /// WEFT_DB, not argv), `sqlite://PATH` or a file path (the embedded default), or `memory:`.
    #[arg(long, env = "WEFT_DB", default_value = "weft.db", global = true)]
    pub db: String,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A failure of a command, with the exit code it maps to.
#[derive(Debug)]
pub(crate) enum Fail {
    /// Bad input: exit code 2.
    Input(String),
    /// The store cannot be used: exit code 3.
    Store(String),
    /// Anything else: exit code 1.
    Other(String),
}

impl Fail {
    /// The process's exit code for this failure.
    pub(crate) fn code(&self) -> u8 {
        match self {
            Fail::Input(_) => 2,
            Fail::Store(_) => 3,
            Fail::Other(_) => 1,
        }
    }

    /// The failure's kind in JSON errors: `input`, `store` or `failed`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Fail::Input(_) => "input",
            Fail::Store(_) => "store",
            Fail::Other(_) => "failed",
        }
    }
}

impl From<weft_store::Error> for Fail {
    fn from(e: weft_store::Error) -> Self {
        match e {
            e if e.is_unavailable() => Fail::Store(e.to_string()),
            e @ (weft_store::Error::NotFound(_)
            | weft_store::Error::Ambiguous(_)
            | weft_store::Error::BadUrl(_)
            | weft_store::Error::NoStore(_)
            | weft_store::Error::Locked { .. }
            | weft_store::Error::Unsupported(_)
            | weft_store::Error::Job(_)) => Fail::Input(e.to_string()),
            e => Fail::Other(e.to_string()),
        }
    }
}

/// The `--input` arguments bound to `flow`'s inputs (defaults filled in, required ones
/// checked); an input given twice is refused.
pub(crate) fn bind_inputs(
    flow: &weft_model::flow::Flow,
    given: Vec<(String, serde_json::Value)>,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>, Fail> {
    let mut inputs = std::collections::BTreeMap::new();
    for (name, value) in given {
        if inputs.insert(name.clone(), value).is_some() {
            return Err(Fail::Input(format!("input `{name}` is given twice")));
        }
    }
    flow.bind_inputs(inputs)
        .map_err(|e| Fail::Input(e.to_string()))
}

impl From<weft_engine::control::ControlError> for Fail {
    fn from(e: weft_engine::control::ControlError) -> Self {
        use weft_engine::control::ControlError;
        match e {
            ControlError::Invalid(m) | ControlError::Refused(m) => Fail::Input(m),
            ControlError::NoAnswer(m) => Fail::Other(m),
            ControlError::Store(e) => Fail::from(e),
        }
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Input(m) | Fail::Store(m) | Fail::Other(m) => f.write_str(m),
        }
    }
}

/// Prints a listing of jobs — JSON with their secret inputs redacted, or a table in claim
/// order with their age on the store's clock (`empty` when there are none).
pub(crate) async fn print_jobs(
    store: &weft_store::SharedStore,
    mut jobs: Vec<weft_store::JobRecord>,
    json: bool,
    empty: &str,
) -> Result<(), Fail> {
    if json {
        for job in &mut jobs {
            job.flow.redact(&mut job.inputs);
        }
        outln!("{}", pretty(&jobs)?);
    } else {
        let now = store.clock().await?;
        out!("{}", view::job_list(&jobs, now, empty));
    }
    Ok(())
}

/// Pretty JSON for stdout.
pub(crate) fn pretty<T: serde::Serialize>(value: &T) -> Result<String, Fail> {
    serde_json::to_string_pretty(value).map_err(|e| Fail::Other(e.to_string()))
}

/// Writes to stdout (and a newline); a closed pipe ends the process quietly.
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
    }
}

/// A `--input NAME=VALUE` (string) or `NAME:=JSON`.
pub(crate) fn parse_input(s: &str) -> Result<(String, serde_json::Value), String> {
    if let Some((name, json)) = s.split_once(":=") {
        if !name.is_empty() && !name.contains('=') {
            let value = serde_json::from_str(json)
                .map_err(|e| format!("input `{name}`: `{json}` is not valid JSON: {e}"))?;
            return Ok((name.to_string(), value));
        }
    }
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => {
            Ok((name.to_string(), serde_json::Value::String(value.into())))
        }
        _ => Err(format!("`{s}` is not NAME=VALUE (or NAME:=JSON)")),
    }
}

/// A duration argument: `30s`, `5m`, `1h30m`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s).map_err(|e| e.to_string())
}

/// A size argument: bytes, or with `KiB`, `MiB` or `GiB` (`512KiB`, `1MiB`; `0` for none).
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{s}` is no size; write bytes, or a number with KiB, MiB or GiB"))?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}`; use KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A job priority argument: `very_high`, `high`, `normal`, `low`, `very_low` (any case).
pub(crate) fn parse_priority(s: &str) -> Result<weft_model::job::Priority, String> {
    s.parse()
}

/// Where steps run: `local` or `remote`.
pub(crate) fn parse_executor(s: &str) -> Result<weft_model::flow::ExecutorKind, String> {
    s.parse()
}

/// A plan state argument: `pending`, `running`, `paused`, `stopped`, …
pub(crate) fn parse_plan_state(s: &str) -> Result<plan::State, String> {
    s.parse()
}

/// Resolves when SIGINT or SIGTERM arrives, with the exit code the shell convention gives
/// a process that signal ends: 130 for SIGINT, 143 for SIGTERM.
pub(crate) async fn interrupted() -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
            }
        }
        // Without signal handlers the default action (exit) applies; never resolve.
        _ => std::future::pending().await,
    }
}
