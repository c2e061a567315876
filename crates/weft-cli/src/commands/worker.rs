//! `weft worker`: a remote worker. It offers the commands of the given flow files as tasks
//! (`flow/step` at the flow's version), answers the executors' requests that reach it through
//! the store, and heartbeats, until SIGINT or SIGTERM.

use crate::shared::{interrupted, parse_duration, Fail, Global};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use weft_engine::Registry;
use weft_model::duration;

/// `weft worker`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Its topic: where executors send it requests (ASCII letters, digits, `.`, `_`, `-`).
    #[arg(long)]
    topic: String,
    /// A flow file whose commands it runs for remote steps. Repeat for more.
    #[arg(long = "tasks", value_name = "FLOW.toml", required = true)]
    tasks: Vec<PathBuf>,
    /// How long its heartbeat stays good: past it, executors fail what it was running with
    /// `WorkerLost` and retry elsewhere.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    lease: Duration,
    /// How much of each stream a command prints is kept for `weft logs` (`0` keeps nothing).
    #[arg(long, value_parser = crate::shared::parse_size, default_value = "1MiB")]
    log_cap: usize,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Runs the worker until SIGINT or SIGTERM.
pub(crate) async fn worker(args: WorkerArgs) -> Result<u8, Fail> {
    weft_worker::check_topic(&args.topic).map_err(|e| Fail::Input(e.to_string()))?;
    if args.lease < Duration::from_secs(1) {
        return Err(Fail::Input(format!(
            "--lease {} is too short: executors would count a live worker lost; use at least 1s",
            duration::format(args.lease)
        )));
    }
    if args.global.db.starts_with("memory:") {
        return Err(Fail::Input(
            "a worker needs a store its executors can reach; `memory:` lives and dies with one process".into(),
        ));
    }
    let mut flows = Vec::new();
    for path in &args.tasks {
        let flow = weft_model::flow::file::load(path).map_err(|e| Fail::Input(e.to_string()))?;
        flows.push((path, flow));
    }
    let store = weft_store::open(&args.global.db).await?;
    // What the commands print is kept as their steps' output (`weft logs`).
    let logs = weft_engine::logs::LogSink::start(store.clone(), args.log_cap);
    let keep = (args.log_cap > 0).then(|| logs.clone());
    let mut registry = Registry::new();
    let mut offered = Vec::new();
    for (path, flow) in &flows {
        let added = registry.add_commands(flow, keep.clone());
        if added.is_empty() {
            return Err(Fail::Input(format!(
                "{} has no command (`run`) for a worker to offer",
                path.display()
            )));
        }
        offered.extend(added);
    }
    let worker = weft_worker::Worker::new(args.topic.clone(), registry)
        .map_err(|e| Fail::Input(e.to_string()))?
        .lease(args.lease);
    eprintln!(
        "worker {} serving {} task{} through {} (SIGINT or SIGTERM to stop): {}",
        args.topic,
        offered.len(),
        if offered.len() == 1 { "" } else { "s" },
        weft_store::redact(&args.global.db),
        offered.join(", ")
    );
    worker
        .run(store, async {
            interrupted().await;
        })
        .await
        .map_err(|e| Fail::Other(e.to_string()))?;
    logs.flush().await;
    eprintln!("worker stopped");
    Ok(0)
}
