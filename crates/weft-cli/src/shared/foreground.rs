//! Executing a plan in this process, in the foreground, as `weft run`, `weft plans resume` and
//! `weft plans cancel` do: taking over a dead holder's lock, progress on stderr, the summary on
//! stdout, and the exit code of the plan's end.

use super::progress::{Display, Mode};
use super::{interrupted, pretty, view, Fail, Global};
use clap::Args;
use std::collections::HashSet;
use std::sync::Arc;
use weft_engine::owner;
use weft_engine::{Config, Engine, Intent, PlanEnd, Registry, Rescue};
use weft_model::plan::{self, Outcome};
use weft_model::PlanId;
use weft_store::SharedStore;

/// How to execute.
#[derive(Debug, Args, Clone)]
pub(crate) struct ExecArgs {
    /// The most steps running at once (default: CPUs × 4).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) parallelism: Option<u32>,
    /// How much of each stream a command prints is kept for `weft logs` (its first half and
    /// its latest half; `0` keeps nothing).
    #[arg(long, value_parser = crate::shared::parse_size, default_value = "1MiB")]
    pub(crate) log_cap: usize,
}

/// Cancels a paused plan here: reverts what completed; the result is `cancelled`.
pub(crate) async fn cancel_paused(
    store: SharedStore,
    id: PlanId,
    global: &Global,
) -> Result<u8, Fail> {
    let exec = ExecArgs {
        parallelism: None,
        log_cap: weft_engine::logs::DEFAULT_CAP,
    };
    execute(store, id, Intent::Cancel, &exec, global)
        .await
        .map(|_| 0)
}

/// Executes a plan here with progress on stderr and the result on stdout; the exit code is
/// the plan's end (see [`exit_code`]), or the signal's if interrupted.
pub(crate) async fn execute(
    store: SharedStore,
    id: PlanId,
    intent: Intent,
    exec: &ExecArgs,
    global: &Global,
) -> Result<u8, Fail> {
    let owner = owner::me();
    let mut config = Config {
        owner: owner.clone(),
        remote: Some(Arc::new(weft_worker::RemoteSteps::default())),
        ..Config::default()
    };
    if let Some(p) = exec.parallelism {
        config.parallelism = p as usize;
    }
    config.log_cap = exec.log_cap;
    let snapshot = store.load_plan(id).await?;
    // Group tasks with a readiness probe: only theirs is a `ready` worth showing.
    let probed: HashSet<(u32, usize)> = snapshot
        .plan
        .flow
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match &d.action {
            weft_model::flow::Action::Group(g) => Some((i, g)),
            _ => None,
        })
        .flat_map(|(i, g)| {
            g.tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| t.ready.is_some())
                .map(move |(j, _)| (i as u32, j))
        })
        .collect();
    let names: Vec<String> = snapshot.steps.into_iter().map(|s| s.name).collect();
    let engine = Engine::start(store.clone(), Arc::new(Registry::new()), config);
    // Events and halts posted by other processes for this plan come through the mailbox.
    let mailbox = tokio::spawn(weft_engine::node::serve_mailbox(engine.clone(), owner));
    let display = Display::start(
        engine.subscribe(),
        id,
        names,
        probed,
        Mode::pick(global.json),
    );
    let run = async {
        match intent {
            Intent::Run => engine.execute(id, Rescue::Revert).await,
            Intent::Cancel => engine.cancel(id).await,
        }
    };
    let result = tokio::select! {
        result = run => result,
        code = interrupted() => {
            let killed = engine.abandon();
            engine.flush_logs().await;
            mailbox.abort();
            display.finish().await;
            eprintln!("interrupted; stopped {killed} running command(s). Continue with: weft plans resume {id}");
            return Ok(code);
        }
    };
    mailbox.abort();
    display.finish().await;
    // What the steps printed is in the store before the process exits.
    engine.flush_logs().await;
    let end = match result {
        Ok(end) => end,
        Err(weft_engine::Error::Store(e)) => return Err(e.into()),
        Err(weft_engine::Error::Refused(reason)) => return Err(Fail::Input(reason)),
        Err(e) => return Err(Fail::Other(e.to_string())),
    };
    let code = report(&store, id, &end, global).await?;
    // Everything into the database file itself: a copy of `weft.db` alone is then whole.
    if let Err(e) = store.checkpoint().await {
        tracing::info!("no checkpoint at the end of the run: {e}");
    }
    Ok(code)
}

async fn report(
    store: &SharedStore,
    id: PlanId,
    end: &PlanEnd,
    global: &Global,
) -> Result<u8, Fail> {
    let snap = store.load_plan(id).await?;
    if global.json {
        let mut value = serde_json::to_value(&snap).map_err(|e| Fail::Other(e.to_string()))?;
        value["result"] = serde_json::Value::String(snap.outcome().to_string());
        outln!("{}", pretty(&value)?);
    } else {
        out!("{}", view::summary(&snap));
    }
    Ok(exit_code(end))
}

/// The exit code of a plan's end: 0 it succeeded (result `success` or `warning`), 1 it ended
/// in error (or was cancelled), 4 it paused and waits for an operator.
pub(crate) fn exit_code(end: &PlanEnd) -> u8 {
    match (end.state, end.outcome) {
        (plan::State::Paused, _) => 4,
        (plan::State::Stopped, Outcome::Success | Outcome::Warning) => 0,
        _ => 1,
    }
}
