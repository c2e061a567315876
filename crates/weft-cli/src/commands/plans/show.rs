//! `weft plans show`: one plan's steps with state, attempts, durations, outputs and failures.

use crate::shared::{pretty, view, Fail, Global};
use clap::Args;

/// `weft plans show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The plan's id (or a unique prefix of it).
    id: String,
    /// Also print every transition of the plan and its steps.
    #[arg(long)]
    history: bool,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Shows one plan, its secret inputs redacted.
pub(crate) async fn show(args: ShowArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_id(args.id).await?;
    let mut snap = store.load_plan(id).await?;
    let plan = &mut snap.plan;
    plan.flow.redact(&mut plan.inputs);
    let history = if args.history {
        Some(store.history(id).await?)
    } else {
        None
    };
    if args.global.json {
        let mut value = serde_json::to_value(&snap).map_err(|e| Fail::Other(e.to_string()))?;
        value["result"] = serde_json::Value::String(snap.outcome().to_string());
        if let Some(h) = &history {
            value["history"] = serde_json::to_value(h).map_err(|e| Fail::Other(e.to_string()))?;
        }
        outln!("{}", pretty(&value)?);
    } else {
        out!("{}", view::plan_detail(&snap, history.as_deref()));
    }
    Ok(0)
}
