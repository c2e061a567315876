//! The command line: clap's types for every subcommand, and dispatch to the module that runs it.

use crate::commands::jobs;
use crate::commands::plans::{
    cancel, halt, history, inhibit, list, prune, rerun, resume, show, skip, wait,
};
use crate::commands::{
    backup, bench, event, logs, queues, run, schedules, serve, status, worker, workers,
};
use crate::shared::Fail;
use clap::{Parser, Subcommand};

/// weft: durable task orchestration. Runs flows of tasks that survive crashes (a killed run
/// continues where it stopped), revert themselves when they fail, and spread over many
/// machines sharing one PostgreSQL. By default everything lives in one SQLite file, weft.db.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Commands,
    /// Log more: `info` for every command (`weft serve` and `weft worker` log at `info`
    /// already), `debug` with -vv. `RUST_LOG` overrides both.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Log only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// How log lines look: `text` (colours only on a terminal) or `json`, one object per
    /// line, for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Commands {
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
    Status(status::StatusArgs),
    /// Print what a plan's tasks printed (every attempt, reverts, group tasks); -f follows.
    Logs(logs::LogsArgs),
    /// Inspect and act on plans.
    Plans {
        #[command(subcommand)]
        command: PlansCommands,
    },
    /// Schedules: flows started on a cron's ticks, in a time zone, by the nodes.
    Schedules {
        #[command(subcommand)]
        command: SchedulesCommands,
    },
    /// Queues: named limits and rates that flows and tasks take slots in (`queue = "NAME"`).
    Queues {
        #[command(subcommand)]
        command: QueuesCommands,
    },
    /// The job board: post flows as jobs for conductors (`weft serve`) to claim and run.
    Jobs {
        #[command(subcommand)]
        command: JobsCommands,
    },
    /// Run a remote worker: run the commands of flow files for remote steps
    /// (`executor = "remote"`) of plans executed anywhere sharing the store.
    Worker(worker::WorkerArgs),
    /// List the remote workers: topic, last seen, running requests and tasks.
    Workers(workers::WorkersArgs),
    /// Copy the whole store, while it is in use, into a new SQLite file (PostgreSQL: use
    /// pg_dump).
    Backup(backup::BackupArgs),
    /// Measure the engine (see docs/benchmarks.md).
    Bench(bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum PlansCommands {
    /// List plans, newest first.
    List(list::ListArgs),
    /// Show a plan: its steps with state, attempts, durations, outputs and failures.
    Show(show::ShowArgs),
    /// Print every transition of a plan and its steps, with why.
    History(history::HistoryArgs),
    /// Stop a plan now: running steps are cancelled, their processes killed; it is never
    /// executed again.
    Halt(halt::HaltArgs),
    /// Cancel a paused plan (what completed is reverted) or one that has not started.
    Cancel(cancel::CancelArgs),
    /// Skip a failed step of a paused plan, and every step that depends on it.
    Skip(skip::SkipArgs),
    /// Forbid executing a plan again (an execution-inhibition lock).
    Inhibit(inhibit::InhibitArgs),
    /// Continue a plan that was interrupted or paused: completed steps are not run again.
    Resume(resume::ResumeArgs),
    /// Wait until a plan stops or pauses, wherever it runs; exit code by its end (0 success,
    /// 1 error, 4 paused), its values as JSON with --json.
    Wait(wait::WaitArgs),
    /// Delete stopped plans that ended long ago, with their history, events and output.
    Prune(prune::PruneArgs),
    /// Run a plan's flow again from one step: a new plan, the outputs of the steps before it
    /// copied from the original.
    Rerun(rerun::RerunArgs),
}

#[derive(Debug, Subcommand)]
enum SchedulesCommands {
    /// Start a flow on a cron's ticks (replaces a schedule of the same name).
    Add(schedules::add::AddArgs),
    /// List schedules with their next fire times.
    List(schedules::list::ListArgs),
    /// Pause a schedule: no tick fires.
    Pause(schedules::change::NameArgs),
    /// Resume a paused schedule from now.
    Resume(schedules::change::NameArgs),
    /// Remove a schedule (its plans stay).
    Remove(schedules::change::NameArgs),
    /// Start a schedule's flow once now; print the plan's id.
    Trigger(schedules::change::NameArgs),
}

#[derive(Debug, Subcommand)]
enum QueuesCommands {
    /// Set a queue's limit and rate (creating it).
    Set(queues::SetArgs),
    /// List queues with their settings and what they hold.
    List(queues::ListArgs),
    /// Remove a queue's settings: what waits in it goes on.
    Remove(queues::RemoveArgs),
}

#[derive(Debug, Subcommand)]
enum JobsCommands {
    /// Post a flow as a job and print its id.
    Post(jobs::post::PostArgs),
    /// List the jobs on the board in claim order (most urgent first, oldest first).
    List(jobs::list::ListArgs),
    /// Show a job: state, owner, attempts, its plan, what it waits for, its history.
    Show(jobs::show::ShowArgs),
    /// Take a broken job off the board into the trash (another's only with --force).
    Trash(jobs::trash::TrashArgs),
    /// List the trash.
    Trashed(jobs::trashed::TrashedArgs),
    /// Move a trashed job back to the board.
    Retry(jobs::retry::RetryArgs),
}

impl Cli {
    /// Starts logging to stderr: `RUST_LOG` (or the older `WEFT_LOG`) if set, else by
    /// `--quiet` / `--verbose`, else `info` for the long-running commands and `warn` for the
    /// rest. No colours unless stderr is a terminal.
    pub(crate) fn init_logging(&self) {
        use std::io::IsTerminal;
        let long_running = matches!(self.command, Commands::Serve(_) | Commands::Worker(_));
        let level = match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) if long_running => "info",
            (false, 0) => "warn",
            (false, 1) => "info",
            (false, _) => "debug",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
            .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG"))
            .unwrap_or_else(|_| level.into());
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Json => builder.json().init(),
            LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        }
    }

    /// Whether the command was asked for JSON (its errors are then JSON too).
    pub(crate) fn json(&self) -> bool {
        match &self.command {
            Commands::Run(a) | Commands::Submit(a) => a.global.json,
            Commands::Serve(a) => a.global.json,
            Commands::Event(a) => a.global.json,
            Commands::Status(a) => a.global.json,
            Commands::Worker(a) => a.global.json,
            Commands::Logs(a) => a.global.json,
            Commands::Workers(a) => a.global.json,
            Commands::Backup(a) => a.global.json,
            Commands::Bench(a) => a.json,
            Commands::Schedules { command } => match command {
                SchedulesCommands::Add(a) => a.global.json,
                SchedulesCommands::List(a) => a.global.json,
                SchedulesCommands::Pause(a)
                | SchedulesCommands::Resume(a)
                | SchedulesCommands::Remove(a)
                | SchedulesCommands::Trigger(a) => a.global.json,
            },
            Commands::Queues { command } => match command {
                QueuesCommands::Set(a) => a.global.json,
                QueuesCommands::List(a) => a.global.json,
                QueuesCommands::Remove(a) => a.global.json,
            },
            Commands::Jobs { command } => match command {
                JobsCommands::Post(a) => a.global.json,
                JobsCommands::List(a) => a.global.json,
                JobsCommands::Show(a) => a.global.json,
                JobsCommands::Trash(a) => a.global.json,
                JobsCommands::Trashed(a) => a.global.json,
                JobsCommands::Retry(a) => a.global.json,
            },
            Commands::Plans { command } => match command {
                PlansCommands::List(a) => a.global.json,
                PlansCommands::Show(a) => a.global.json,
                PlansCommands::History(a) => a.global.json,
                PlansCommands::Halt(a) => a.global.json,
                PlansCommands::Cancel(a) => a.global.json,
                PlansCommands::Skip(a) => a.global.json,
                PlansCommands::Inhibit(a) => a.global.json,
                PlansCommands::Resume(a) => a.global.json,
                PlansCommands::Wait(a) => a.global.json,
                PlansCommands::Prune(a) => a.global.json,
                PlansCommands::Rerun(a) => a.global.json,
            },
        }
    }
}

/// Runs the parsed command; returns the exit code.
pub(crate) async fn dispatch(cli: Cli) -> Result<u8, Fail> {
    match cli.command {
        Commands::Run(args) => run::run(args, false).await,
        Commands::Submit(args) => run::run(args, true).await,
        Commands::Serve(args) => serve::serve(args).await,
        Commands::Event(args) => event::event(args).await,
        Commands::Status(args) => status::status(args).await,
        Commands::Worker(args) => worker::worker(args).await,
        Commands::Logs(args) => logs::logs(args).await,
        Commands::Workers(args) => workers::list(args).await,
        Commands::Backup(args) => backup::backup(args).await,
        Commands::Bench(args) => bench::bench(args).await,
        Commands::Queues { command } => match command {
            QueuesCommands::Set(args) => queues::set(args).await,
            QueuesCommands::List(args) => queues::list(args).await,
            QueuesCommands::Remove(args) => queues::remove(args).await,
        },
        Commands::Schedules { command } => match command {
            SchedulesCommands::Add(args) => schedules::add::add(args).await,
            SchedulesCommands::List(args) => schedules::list::list(args).await,
            SchedulesCommands::Pause(args) => schedules::change::pause(args).await,
            SchedulesCommands::Resume(args) => schedules::change::resume(args).await,
            SchedulesCommands::Remove(args) => schedules::change::remove(args).await,
            SchedulesCommands::Trigger(args) => schedules::change::trigger(args).await,
        },
        Commands::Jobs { command } => match command {
            JobsCommands::Post(args) => jobs::post::post(args).await,
            JobsCommands::List(args) => jobs::list::list(args).await,
            JobsCommands::Show(args) => jobs::show::show(args).await,
            JobsCommands::Trash(args) => jobs::trash::trash(args).await,
            JobsCommands::Trashed(args) => jobs::trashed::trashed(args).await,
            JobsCommands::Retry(args) => jobs::retry::retry(args).await,
        },
        Commands::Plans { command } => match command {
            PlansCommands::List(args) => list::list(args).await,
            PlansCommands::Show(args) => show::show(args).await,
            PlansCommands::History(args) => history::history(args).await,
            PlansCommands::Halt(args) => halt::halt(args).await,
            PlansCommands::Cancel(args) => cancel::cancel(args).await,
            PlansCommands::Skip(args) => skip::skip(args).await,
            PlansCommands::Inhibit(args) => inhibit::inhibit(args).await,
            PlansCommands::Resume(args) => resume::resume(args).await,
            PlansCommands::Wait(args) => wait::wait(args).await,
            PlansCommands::Prune(args) => prune::prune(args).await,
            PlansCommands::Rerun(args) => rerun::rerun(args).await,
        },
    }
}
