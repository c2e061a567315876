//! `weft event`: delivers an event to a suspended step, through the process executing its
//! plan, and waits until the step's new state is durable.

use crate::shared::{parse_duration, Fail, Global};
use clap::Args;
use std::time::Duration;
use weft_engine::control::{self, ControlError};

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
    match control::event(&store, id, &args.step, data, args.optional, args.wait).await {
        Ok(()) => {
            if !args.global.json {
                eprintln!("event delivered to step `{}` of plan {id}", args.step);
            }
            Ok(0)
        }
        // An optional event that cannot be taken is dropped (Dynflow's `optional: true`).
        Err(ControlError::Refused(reason)) if args.optional => {
            eprintln!("event dropped: {reason}");
            Ok(0)
        }
        Err(e) => Err(e.into()),
    }
}
