//! `weft logs`: what a plan's tasks printed — every attempt, reverts and group tasks too — as
//! kept in the store, from any machine that reaches it; `-f` follows while the plan runs.

use crate::shared::{Fail, Global};
use clap::Args;
use std::io::Write;
use std::time::Duration;
use weft_model::plan;
use weft_store::{LogKey, LogQuery, LogRow, SharedStore};

/// How often `-f` looks for more.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Chunks read at once.
const PAGE: u32 = 1000;

/// `weft logs`.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The plan's id (or a unique prefix of it).
    plan: String,
    /// Only this step (its name).
    step: Option<String>,
    /// Only this attempt of it.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    attempt: Option<u32>,
    /// Only stdout or stderr.
    #[arg(long, value_parser = ["stdout", "stderr"])]
    stream: Option<String>,
    /// Keep printing what comes until the plan stops or pauses.
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Prints the logs.
pub(crate) async fn logs(args: LogsArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_id(args.plan.clone()).await?;
    let snap = store.load_plan(id).await?;
    let names: Vec<String> = snap.steps.iter().map(|s| s.name.clone()).collect();
    let step = match &args.step {
        Some(name) => Some(names.iter().position(|n| n == name).ok_or_else(|| {
            Fail::Input(format!(
                "plan {id} has no step `{name}`; its steps: {}",
                names.join(", ")
            ))
        })? as u32),
        None => None,
    };
    let mut query = LogQuery {
        plan: id,
        step,
        attempt: args.attempt,
        stream: args.stream.clone(),
        after: 0,
        limit: PAGE,
    };
    // One step's one stream prints as it was written, without a header.
    let raw = step.is_some() && args.stream.is_some();
    let mut printer = Printer::new(names, args.global.json, raw);
    // Whether the plan was seen running: only then can its last output still be on its way.
    let mut was_running = false;
    loop {
        let rows = store.read_logs(query.clone()).await?;
        let full = rows.len() == PAGE as usize;
        if let Some(last) = rows.last() {
            query.after = last.id;
        }
        printer.print(&rows)?;
        if full {
            continue;
        }
        if !args.follow || !running(&store, id).await? {
            break;
        }
        was_running = true;
        tokio::time::sleep(FOLLOW_POLL).await;
    }
    // A node writes what its steps printed within one flush of the log pump: what the last
    // moments printed arrives after the plan's end.
    if args.follow && was_running {
        tokio::time::sleep(2 * weft_engine::logs::FLUSH).await;
        let rows = store.read_logs(query).await?;
        printer.print(&rows)?;
    }
    if printer.printed == 0 && !args.global.json {
        eprintln!(
            "plan {id} has no output kept{}",
            match &args.step {
                Some(s) => format!(" for step {s}"),
                None => String::new(),
            }
        );
    }
    Ok(0)
}

/// Whether the plan may still print: not stopped, not paused.
async fn running(store: &SharedStore, id: weft_model::PlanId) -> Result<bool, Fail> {
    let state = store.load_plan(id).await?.plan.state;
    Ok(!matches!(state, plan::State::Stopped | plan::State::Paused))
}

/// Writes chunks to stdout as they were printed, with a header whenever the stream changes
/// and a mark where the middle of a stream was cut.
struct Printer {
    names: Vec<String>,
    json: bool,
    /// The stream printed last, and where each stream's next byte is.
    current: Option<LogKey>,
    next: std::collections::HashMap<LogKey, u64>,
    printed: usize,
    /// No header before the first stream.
    raw: bool,
    /// Whether the last byte printed ended a line (a header or a mark starts on its own).
    at_line_start: bool,
}

impl Printer {
    fn new(names: Vec<String>, json: bool, raw: bool) -> Self {
        Printer {
            names,
            json,
            current: None,
            next: std::collections::HashMap::new(),
            printed: 0,
            raw,
            at_line_start: true,
        }
    }

    /// A chunk for people: a header when the stream changes, a mark where bytes were cut
    /// (each on a line of its own), then the bytes as printed.
    fn text(
        &mut self,
        out: &mut impl Write,
        step: &str,
        c: &weft_store::LogChunk,
        cut: u64,
    ) -> std::io::Result<()> {
        if self.raw && self.current.is_none() {
            self.current = Some(c.key.clone());
        }
        if self.current.as_ref() != Some(&c.key) {
            self.end_line(out)?;
            let task = if c.key.task.is_empty() {
                String::new()
            } else {
                format!(" task {}", c.key.task)
            };
            let action = if c.key.action == "revert" {
                " (revert)"
            } else {
                ""
            };
            writeln!(
                out,
                "==> {step}{task} attempt {}{action} {} <==",
                c.key.attempt, c.key.stream
            )?;
            self.current = Some(c.key.clone());
        }
        if cut > 0 {
            self.end_line(out)?;
            writeln!(out, "[… {cut} bytes cut …]")?;
        }
        if let Some(last) = c.data.last() {
            self.at_line_start = *last == b'\n';
        }
        out.write_all(&c.data)
    }

    /// Ends the line the output stopped in, if it stopped in one.
    fn end_line(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if !self.at_line_start {
            out.write_all(b"\n")?;
            self.at_line_start = true;
        }
        Ok(())
    }

    fn print(&mut self, rows: &[LogRow]) -> Result<(), Fail> {
        let mut out = std::io::stdout().lock();
        for row in rows {
            let c = &row.chunk;
            let step = self
                .names
                .get(c.key.step as usize)
                .cloned()
                .unwrap_or_else(|| c.key.step.to_string());
            let expected = self.next.get(&c.key).copied().unwrap_or(0);
            let cut = c.offset.saturating_sub(expected);
            self.next
                .insert(c.key.clone(), c.offset + c.data.len() as u64);
            self.printed += 1;
            let written = if self.json {
                let line = serde_json::json!({
                    "step": step,
                    "task": c.key.task,
                    "attempt": c.key.attempt,
                    "action": c.key.action,
                    "stream": c.key.stream,
                    "offset": c.offset,
                    "cut_before": cut,
                    "at": weft_model::time::format_rfc3339(c.at),
                    "text": String::from_utf8_lossy(&c.data),
                });
                writeln!(out, "{line}")
            } else {
                self.text(&mut out, &step, c, cut)
            };
            if let Err(e) = written.and_then(|()| out.flush()) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    std::process::exit(141);
                }
                return Err(Fail::Other(format!("cannot write the logs: {e}")));
            }
        }
        Ok(())
    }
}
