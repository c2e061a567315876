//! `weft run` and `weft plans resume`: execute a plan here, in the foreground.

use crate::cli::{parse_input, Global};
use crate::progress::{Display, Mode};
use crate::{owner, view, Fail};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use weft_engine::{Config, Engine, Registry, Rescue};
use weft_model::plan::{self, Outcome};
use weft_model::{now_millis, PlanId};
use weft_store::{NewPlan, SharedStore};

/// `weft run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The flow file (TOML).
    flow: PathBuf,
    /// An input: NAME=VALUE (a string) or NAME:=JSON. Repeat for more.
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE", value_parser = parse_input)]
    inputs: Vec<(String, serde_json::Value)>,
    #[command(flatten)]
    exec: ExecArgs,
    #[command(flatten)]
    global: Global,
}

/// How to execute.
#[derive(Debug, Args, Clone)]
pub struct ExecArgs {
    /// The most steps running at once (default: CPUs × 4).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    parallelism: Option<u32>,
}

/// Plans the flow and executes it.
pub async fn run(args: RunArgs) -> Result<u8, Fail> {
    let flow = weft_model::flow::file::load(&args.flow).map_err(|e| Fail::Input(e.to_string()))?;
    let mut given = BTreeMap::new();
    for (name, value) in args.inputs {
        if given.insert(name.clone(), value).is_some() {
            return Err(Fail::Input(format!("input `{name}` is given twice")));
        }
    }
    let inputs = flow
        .bind_inputs(given)
        .map_err(|e| Fail::Input(e.to_string()))?;
    let store = weft_store::open(&args.global.db)?;
    let id = PlanId::new();
    let steps = flow.steps.len();
    store
        .create_plan(NewPlan {
            id,
            flow,
            inputs,
            state: plan::State::Planned,
            created_at: now_millis(),
        })
        .await?;
    if !args.global.json {
        eprintln!(
            "plan {id} ({steps} steps); if interrupted, continue with: weft plans resume {id}"
        );
    }
    execute(store, id, &args.exec, &args.global).await
}

/// Resumes a stored plan.
pub async fn resume(global: &Global, id: &str, exec: &ExecArgs) -> Result<u8, Fail> {
    let store = weft_store::open(&global.db)?;
    let id = store.resolve_id(id.to_string()).await?;
    if let Some(holder) = store.lock_owner(id).await? {
        if owner::is_dead(&holder) {
            store.release_lock(id, None).await?;
        } else {
            return Err(Fail::Other(format!(
                "plan {id} is being executed by {holder}, which is still running"
            )));
        }
    }
    execute(store, id, exec, global).await
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // Without signal handlers the default action (exit) applies; never resolve.
        _ => std::future::pending::<()>().await,
    }
}

async fn execute(
    store: SharedStore,
    id: PlanId,
    exec: &ExecArgs,
    global: &Global,
) -> Result<u8, Fail> {
    let mut config = Config {
        owner: owner::me(),
        ..Config::default()
    };
    if let Some(p) = exec.parallelism {
        config.parallelism = p as usize;
    }
    let names: Vec<String> = store
        .load_plan(id)
        .await?
        .steps
        .into_iter()
        .map(|s| s.name)
        .collect();
    let engine = Engine::start(store.clone(), Arc::new(Registry::new()), config);
    let display = Display::start(engine.subscribe(), id, names, Mode::pick(global.json));
    let result = tokio::select! {
        result = engine.execute(id, Rescue::Revert) => result,
        _ = interrupted() => {
            let killed = engine.abandon();
            display.finish().await;
            eprintln!(
                "interrupted; stopped {killed} running command(s). Continue with: weft plans resume {id}"
            );
            return Ok(130);
        }
    };
    display.finish().await;
    let end = match result {
        Ok(end) => end,
        Err(weft_engine::Error::Store(e)) => return Err(e.into()),
        Err(e) => return Err(Fail::Other(e.to_string())),
    };
    let snap = store.load_plan(id).await?;
    if global.json {
        let mut value = serde_json::to_value(&snap).map_err(|e| Fail::Other(e.to_string()))?;
        value["result"] = serde_json::Value::String(snap.outcome().to_string());
        println!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| Fail::Other(e.to_string()))?
        );
    } else {
        print!("{}", view::summary(&snap));
    }
    Ok(
        if end.state == plan::State::Stopped && end.outcome == Outcome::Success {
            0
        } else {
            1
        },
    )
}
