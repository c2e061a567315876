//! Command-line arguments, parsed once into the commands below.

use crate::{bench, plans, run, Fail};
use clap::{Args, Parser, Subcommand};
use weft_model::plan;

/// weft: durable task orchestration.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every command that touches the store takes.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// The store: `sqlite://PATH`, a file path, or `memory:`.
    #[arg(long, env = "WEFT_DB", default_value = "weft.db", global = true)]
    pub db: String,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Plan a flow and execute it here, showing progress; exit code from the result.
    Run(run::RunArgs),
    /// Inspect and act on plans.
    Plans {
        #[command(subcommand)]
        command: PlansCommand,
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

fn parse_plan_state(s: &str) -> Result<plan::State, String> {
    s.parse()
}

/// Runs the parsed command; returns the exit code.
pub async fn dispatch(cli: Cli) -> Result<u8, Fail> {
    match cli.command {
        Command::Run(args) => run::run(args).await,
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
        },
        Command::Bench(args) => bench::run(args).await,
    }
}

/// A `--input NAME=VALUE` (string) or `NAME:=JSON`.
pub fn parse_input(s: &str) -> Result<(String, serde_json::Value), String> {
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
