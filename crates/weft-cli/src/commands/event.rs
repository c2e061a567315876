//! `weft event`: delivers an event to a suspended step, through the process executing its
//! plan, and waits until the step's new state is durable.

use crate::shared::{parse_duration, Fail, Global};
use clap::Args;
use std::time::Duration;
use weft_engine::owner;
use weft_model::{duration, step};
use weft_store::{Instruction, Reply};

/// `weft event`.
#[derive(Debug, Args)]
pub(crate) struct EventArgs {
    /// The plan's id (or a unique prefix).
    plan: String,
    /// The step's name.
    step: String,
    /// The event's data: a JSON object; its keys become the step's output.
    #[arg(long, default_value = "{}")]
    data: String,
    /// If the plan cannot take the event, drop it quietly (exit 0) instead of failing.
    #[arg(long)]
    optional: bool,
    /// How long to wait for the executing process to take the event.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    wait: Duration,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Sends the event.
pub(crate) async fn event(args: EventArgs) -> Result<u8, Fail> {
    let data: serde_json::Value = serde_json::from_str(&args.data)
        .map_err(|e| Fail::Input(format!("--data is not valid JSON: {e}")))?;
    if !data.is_object() {
        return Err(Fail::Input(
            "--data must be a JSON object, like '{\"approved\": true}'".into(),
        ));
    }
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_id(args.plan.clone()).await?;
    let snap = store.load_plan(id).await?;
    let Some(index) = snap.steps.iter().position(|s| s.name == args.step) else {
        let names: Vec<&str> = snap.steps.iter().map(|s| s.name.as_str()).collect();
        return Err(Fail::Input(format!(
            "plan {id} has no step `{}`; its steps are: {}",
            args.step,
            names.join(", ")
        )));
    };
    let refuse = |reason: String| -> Result<u8, Fail> {
        if args.optional {
            eprintln!("event dropped: {reason}");
            Ok(0)
        } else {
            Err(Fail::Input(reason))
        }
    };
    let state = snap.steps[index].state;
    if state != step::State::Suspended {
        return refuse(format!(
            "step `{}` of plan {id} is {state}, not suspended; it cannot process events",
            args.step
        ));
    }
    if owner::live_holder(&store, id).await?.is_none() {
        return refuse(format!(
            "plan {id} is {} and no process is executing it; resume it (weft plans resume) or start a node (weft serve)",
            snap.plan.state
        ));
    }
    let message = store
        .post(
            id,
            Instruction::Event {
                step: index as u32,
                data,
                optional: args.optional,
            },
        )
        .await?;
    match weft_store::wait_for_reply(&*store, message, args.wait).await? {
        Reply::Done => {
            if !args.global.json {
                eprintln!("event delivered to step `{}` of plan {id}", args.step);
            }
            Ok(0)
        }
        Reply::Refused(reason) => refuse(reason),
        Reply::Pending => Err(Fail::Other(format!(
            "no process took the event within {}; it was withdrawn",
            duration::format(args.wait)
        ))),
    }
}
