//! `weft run` / `weft submit` and the operator commands that execute a plan here, in the
//! foreground: `plans resume` and `plans cancel`.

use crate::cli::{parse_input, Global};
use crate::progress::{Display, Mode};
use crate::{owner, view, Fail};
use clap::Args;
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use weft_engine::{Config, Engine, Intent, PlanEnd, Registry, Rescue};
use weft_model::plan::{self, Outcome};
use weft_model::{duration, format_millis, now_millis, parse_utc, PlanId};
use weft_store::{NewPlan, SharedStore};

/// `weft run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The flow file (TOML).
    flow: PathBuf,
    /// An input: NAME=VALUE (a string) or NAME:=JSON. Repeat for more.
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE", value_parser = parse_input)]
    inputs: Vec<(String, serde_json::Value)>,
    /// Store the plan for a node (`weft serve`) to execute, print its id, and return at once.
    #[arg(long)]
    detach: bool,
    /// Start it at this UTC time (`2026-11-23T18:30:00Z` or `"2026-11-23 18:30"`); implies
    /// --detach.
    #[arg(long, value_parser = parse_utc, conflicts_with = "delay")]
    at: Option<i64>,
    /// Start it after this long (`30s`, `5m`); implies --detach.
    #[arg(long, value_parser = parse_delay)]
    delay: Option<std::time::Duration>,
    /// Start it only once every one of these plans has stopped (comma-separated ids); if one
    /// of them ended in error, it fails with `failed_dependency`. Implies --detach.
    #[arg(long, value_delimiter = ',', value_name = "PLAN_ID")]
    after: Vec<String>,
    #[command(flatten)]
    exec: ExecArgs,
    #[command(flatten)]
    pub(crate) global: Global,
}

fn parse_delay(s: &str) -> Result<std::time::Duration, String> {
    duration::parse(s).map_err(|e| e.to_string())
}

/// How to execute.
#[derive(Debug, Args, Clone)]
pub(crate) struct ExecArgs {
    /// The most steps running at once (default: CPUs × 4).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    parallelism: Option<u32>,
}

/// Plans the flow and executes it here, or stores it for a node (`detach`).
pub(crate) async fn run(mut args: RunArgs, detach: bool) -> Result<u8, Fail> {
    let flow = weft_model::flow::file::load(&args.flow).map_err(|e| Fail::Input(e.to_string()))?;
    let mut given = BTreeMap::new();
    for (name, value) in std::mem::take(&mut args.inputs) {
        if given.insert(name.clone(), value).is_some() {
            return Err(Fail::Input(format!("input `{name}` is given twice")));
        }
    }
    let inputs = flow
        .bind_inputs(given)
        .map_err(|e| Fail::Input(e.to_string()))?;
    let store = weft_store::open(&args.global.db).await?;
    let mut new = NewPlan::new(flow, inputs);
    let id = new.id;
    let steps = new.flow.steps.len();
    let start_at = args
        .at
        .or(args.delay.map(|d| weft_model::after(now_millis(), d)));
    let detach = detach || args.detach || start_at.is_some() || !args.after.is_empty();
    for prerequisite in &args.after {
        new.after
            .push(store.resolve_id(prerequisite.clone()).await?);
    }
    if start_at.is_some() || !new.after.is_empty() {
        new.state = plan::State::Scheduled;
        new.start_at = start_at;
    }
    if !detach {
        // The lock is taken as the plan is stored, so that no node claims it first.
        new.owner = Some(owner::me());
    }
    store.create_plan(new).await?;
    if detach {
        if args.global.json {
            outln!(
                "{}",
                serde_json::json!({ "plan": id.to_string(), "start_at": start_at.map(weft_model::time::format_rfc3339) })
            );
        } else {
            outln!("{id}");
            match start_at {
                Some(at) => eprintln!(
                    "plan {id} scheduled for {} UTC; a node (weft serve) starts it",
                    format_millis(at)
                ),
                None => eprintln!("plan {id} submitted; a node (weft serve) executes it"),
            }
        }
        return Ok(0);
    }
    if !args.global.json {
        eprintln!(
            "plan {id} ({steps} steps); if interrupted, continue with: weft plans resume {id}"
        );
    }
    execute(store, id, Intent::Run, &args.exec, &args.global).await
}

/// Takes over a plan whose execution lock is held by a process that is gone; refuses (exit 2)
/// one that a live process executes.
pub(crate) async fn take_over(store: &SharedStore, id: PlanId) -> Result<(), Fail> {
    if let Some(holder) = store.lock_owner(id).await? {
        if !owner::is_alive(store, &holder).await? {
            store.release_lock(id, None).await?;
        } else {
            let state = store.load_plan(id).await?.plan.state;
            return Err(Fail::Input(format!(
                "plan {id} is {state} and being executed by {holder}, which is alive"
            )));
        }
    }
    Ok(())
}

/// Resumes a stored plan here.
pub(crate) async fn resume(global: &Global, id: &str, exec: &ExecArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&global.db).await?;
    let id = store.resolve_id(id.to_string()).await?;
    take_over(&store, id).await?;
    let state = store.load_plan(id).await?.plan.state;
    if matches!(state, plan::State::Stopped | plan::State::Scheduled) {
        return Err(Fail::Input(format!(
            "cannot resume plan {id}: it's {state}"
        )));
    }
    execute(store, id, Intent::Run, exec, global).await
}

/// Cancels a paused plan here: reverts what completed; the result is `cancelled`.
pub(crate) async fn cancel_paused(
    store: SharedStore,
    id: PlanId,
    global: &Global,
) -> Result<u8, Fail> {
    let exec = ExecArgs { parallelism: None };
    execute(store, id, Intent::Cancel, &exec, global)
        .await
        .map(|_| 0)
}

/// Resolves on SIGINT or SIGTERM.
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

async fn execute(
    store: SharedStore,
    id: PlanId,
    intent: Intent,
    exec: &ExecArgs,
    global: &Global,
) -> Result<u8, Fail> {
    let owner = owner::me();
    let mut config = Config {
        owner: owner.clone(),
        ..Config::default()
    };
    if let Some(p) = exec.parallelism {
        config.parallelism = p as usize;
    }
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
            mailbox.abort();
            display.finish().await;
            eprintln!("interrupted; stopped {killed} running command(s). Continue with: weft plans resume {id}");
            return Ok(code);
        }
    };
    mailbox.abort();
    display.finish().await;
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
        outln!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| Fail::Other(e.to_string()))?
        );
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
