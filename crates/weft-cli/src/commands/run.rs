//! `weft run` and `weft submit`: plan a flow, then execute it here or store it for a node.

use crate::shared::foreground::{execute, ExecArgs};
use crate::shared::{parse_duration, parse_executor, parse_input, waiting, Fail, Global};
use clap::Args;
use std::path::PathBuf;
use weft_engine::owner;
use weft_engine::Intent;
use weft_model::flow::ExecutorKind;
use weft_model::plan;
use weft_model::{format_millis, now_millis, parse_time};
use weft_store::NewPlan;

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
    /// With --detach (or `weft submit`): then wait until a node has run it; exit code by its
    /// end, its values as JSON with --json.
    #[arg(long)]
    wait: bool,
    /// Start it at this time: `2026-11-23T18:30:00Z`, `2026-11-23T20:30:00+02:00`, `"2026-11-23
    /// 20:30 Europe/Berlin"` or `"2026-11-23 18:30"` (UTC); implies --detach. A time in the
    /// past is refused unless --allow-past.
    #[arg(long, value_parser = parse_time, conflicts_with = "delay")]
    at: Option<i64>,
    /// With --at: a time already past starts the plan at once instead of being refused.
    #[arg(long, requires = "at")]
    allow_past: bool,
    /// Start it after this long (`30s`, `5m`); implies --detach.
    #[arg(long, value_parser = parse_duration)]
    delay: Option<std::time::Duration>,
    /// Start it only once every one of these plans has stopped (comma-separated ids); if one
    /// of them ended in error, it fails with `failed_dependency`. Implies --detach.
    #[arg(long, value_delimiter = ',', value_name = "PLAN_ID")]
    after: Vec<String>,
    /// An idempotency key: if a plan was submitted with this key within --key-window, print
    /// its id instead of submitting another. Implies --detach.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// How long a key holds (default 24h).
    #[arg(long, value_parser = parse_duration, default_value = "24h", requires = "key")]
    key_window: std::time::Duration,
    /// Where its commands and named tasks run: `local`, or `remote` on workers (`weft
    /// worker`); overrides the flow file.
    #[arg(long, value_parser = parse_executor)]
    executor: Option<ExecutorKind>,
    #[command(flatten)]
    exec: ExecArgs,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Plans the flow and executes it here, or stores it for a node (`detach`).
pub(crate) async fn run(mut args: RunArgs, detach: bool) -> Result<u8, Fail> {
    let mut flow =
        weft_model::flow::file::load(&args.flow).map_err(|e| Fail::Input(e.to_string()))?;
    if let Some(e) = args.executor {
        flow.set_executor(e);
    }
    let inputs = crate::shared::bind_inputs(&flow, std::mem::take(&mut args.inputs))?;
    if let Some(at) = args.at {
        let now = now_millis();
        if at < now && !args.allow_past {
            return Err(Fail::Input(format!(
                "--at {} UTC is in the past (it is {} UTC now); pass --allow-past to start it at once",
                format_millis(at),
                format_millis(now)
            )));
        }
    }
    let store = weft_store::open(&args.global.db).await?;
    let mut new = NewPlan::new(flow, inputs);
    let id = new.id;
    let steps = new.flow.steps.len();
    let start_at = args
        .at
        .or(args.delay.map(|d| weft_model::after(now_millis(), d)));
    let detach =
        detach || args.detach || start_at.is_some() || !args.after.is_empty() || args.key.is_some();
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
    let new_id = id;
    let id = match &args.key {
        None => {
            store.create_plan(new).await?;
            id
        }
        Some(key) => {
            if key.is_empty() {
                return Err(Fail::Input("--key must not be empty".into()));
            }
            let window = i64::try_from(args.key_window.as_millis()).unwrap_or(i64::MAX);
            let held = store.create_plan_once(new, key.clone(), window).await?;
            if held != new_id {
                eprintln!(
                    "plan {held} was already submitted with key `{key}`; not submitted again"
                );
            }
            held
        }
    };
    if detach {
        if args.wait {
            if !args.global.json {
                outln!("{id}");
                if id == new_id {
                    eprintln!("plan {id} submitted; waiting for a node (weft serve) to run it");
                }
            }
            return waiting::wait(store, id, args.global.json).await;
        }
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
                None if id == new_id => {
                    eprintln!("plan {id} submitted; a node (weft serve) executes it")
                }
                None => {}
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
