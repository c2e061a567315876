//! Command-line arguments, parsed once into the commands below.

use crate::{bench, event, plans, run, serve, status, Fail};
use clap::{Args, Parser, Subcommand};
use weft_model::plan;

/// weft: durable task orchestration. Runs flows of tasks that survive crashes (a killed run
/// continues where it stopped), revert themselves when they fail, and spread over many
/// machines sharing one PostgreSQL. By default everything lives in one SQLite file, weft.db.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

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

#[derive(Debug, Subcommand)]
enum Command {
    /// Plan a flow and execute it here, showing progress; exit code from the result.
    /// With --detach (or --at, --delay, --after), store it for a node instead.
    Run(run::RunArgs),
    /// Store a plan for a node to execute and print its id (`run --detach`).
    Submit(run::RunArgs),
    /// Run a node: execute submitted plans, start delayed ones, deliver events.
    Serve(serve::ServeArgs),
    /// Deliver an event to a suspended step.
    Event(event::EventArgs),
    /// Print each node's live report: its manifolds' states, inputs, starts and last errors.
    Status {
        #[command(flatten)]
        global: Global,
    },
    /// Inspect and act on plans.
    Plans {
        #[command(subcommand)]
        command: PlansCommand,
    },
    /// Copy the whole store, while it is in use, into a new SQLite file (PostgreSQL: use
    /// pg_dump).
    Backup {
        /// The new file.
        path: std::path::PathBuf,
        #[command(flatten)]
        global: Global,
    },
    /// Measure the engine (see docs/benchmarks.md).
    Bench(bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum PlansCommand {
    /// List plans, newest first.
    List {
        /// Only plans in this state (pending, planned, running, paused, stopped, …).
        #[arg(long, value_parser = parse_plan_state)]
        state: Option<plan::State>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        global: Global,
    },
    /// Show a plan: its steps with state, attempts, durations, outputs and failures.
    Show {
        /// The plan's id (or a unique prefix of it).
        id: String,
        /// Also print every transition of the plan and its steps.
        #[arg(long)]
        history: bool,
        #[command(flatten)]
        global: Global,
    },
    /// Print every transition of a plan and its steps, with why.
    History {
        /// The plan's id (or a unique prefix of it).
        id: String,
        #[command(flatten)]
        global: Global,
    },
    /// Stop a plan now: running steps are cancelled, their processes killed; it is never
    /// executed again.
    Halt {
        /// The plan's id (or a unique prefix of it).
        id: String,
        #[command(flatten)]
        global: Global,
    },
    /// Cancel a paused plan (what completed is reverted) or one that has not started.
    Cancel {
        /// The plan's id (or a unique prefix of it).
        id: String,
        #[command(flatten)]
        global: Global,
    },
    /// Skip a failed step of a paused plan, and every step that depends on it.
    Skip {
        /// The plan's id (or a unique prefix of it).
        id: String,
        /// The step's name.
        step: String,
        #[command(flatten)]
        global: Global,
    },
    /// Forbid executing a plan again (an execution-inhibition lock).
    Inhibit {
        /// The plan's id (or a unique prefix of it).
        id: String,
        #[command(flatten)]
        global: Global,
    },
    /// Continue a plan that was interrupted or paused: completed steps are not run again.
    Resume {
        /// The plan's id (or a unique prefix of it).
        id: String,
        #[command(flatten)]
        exec: run::ExecArgs,
        #[command(flatten)]
        global: Global,
    },
}

impl Cli {
    /// Whether the command was asked for JSON (its errors are then JSON too).
    pub(crate) fn json(&self) -> bool {
        match &self.command {
            Command::Run(a) | Command::Submit(a) => a.global.json,
            Command::Serve(a) => a.global.json,
            Command::Event(a) => a.global.json,
            Command::Status { global } | Command::Backup { global, .. } => global.json,
            Command::Bench(a) => a.json,
            Command::Plans { command } => match command {
                PlansCommand::List { global, .. }
                | PlansCommand::Show { global, .. }
                | PlansCommand::History { global, .. }
                | PlansCommand::Halt { global, .. }
                | PlansCommand::Cancel { global, .. }
                | PlansCommand::Skip { global, .. }
                | PlansCommand::Inhibit { global, .. }
                | PlansCommand::Resume { global, .. } => global.json,
            },
        }
    }
}

fn parse_plan_state(s: &str) -> Result<plan::State, String> {
    s.parse()
}

/// Runs the parsed command; returns the exit code.
pub(crate) async fn dispatch(cli: Cli) -> Result<u8, Fail> {
    match cli.command {
        Command::Run(args) => run::run(args, false).await,
        Command::Submit(args) => run::run(args, true).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Event(args) => event::event(args).await,
        Command::Status { global } => status::status(&global).await,
        Command::Plans { command } => match command {
            PlansCommand::List {
                state,
                limit,
                global,
            } => plans::list(&global, state, limit).await,
            PlansCommand::Show {
                id,
                history,
                global,
            } => plans::show(&global, &id, history).await,
            PlansCommand::Resume { id, exec, global } => run::resume(&global, &id, &exec).await,
            PlansCommand::History { id, global } => plans::history(&global, &id).await,
            PlansCommand::Halt { id, global } => plans::halt(&global, &id).await,
            PlansCommand::Cancel { id, global } => plans::cancel(&global, &id).await,
            PlansCommand::Skip { id, step, global } => plans::skip(&global, &id, &step).await,
            PlansCommand::Inhibit { id, global } => plans::inhibit(&global, &id).await,
        },
        Command::Backup { path, global } => {
            let store = weft_store::open_existing(&global.db).await?;
            store.backup(path.clone()).await?;
            eprintln!(
                "backed up {} to {}",
                weft_store::redact(&global.db),
                path.display()
            );
            Ok(0)
        }
        Command::Bench(args) => bench::run(args).await,
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
