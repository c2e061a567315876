//! `weft plans show`: one plan's steps with state, attempts, durations, outputs and failures.

use crate::shared::{capable, pretty, view, Fail, Global};
use clap::Args;
use weft_model::plan;

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
    let mut waiting: Vec<String> = waiting_for(&store, &snap).await?.into_iter().collect();
    waiting.extend(capable::workers_missing(&store, &snap).await?);
    waiting.extend(capable::slots_waited(&store, &snap).await?);
    let history = if args.history {
        Some(store.history(id).await?)
    } else {
        None
    };
    if args.global.json {
        let mut value = serde_json::to_value(&snap).map_err(|e| Fail::Other(e.to_string()))?;
        value["result"] = serde_json::Value::String(snap.outcome().to_string());
        if !waiting.is_empty() {
            value["waiting_for"] = serde_json::Value::String(waiting.join("; "));
        }
        if let Some(h) = &history {
            value["history"] = serde_json::to_value(h).map_err(|e| Fail::Other(e.to_string()))?;
        }
        outln!("{}", pretty(&value)?);
    } else {
        for w in &waiting {
            outln!("{w}");
        }
        out!("{}", view::plan_detail(&snap, history.as_deref()));
        let kept = store
            .read_logs(weft_store::LogQuery {
                plan: id,
                limit: 1,
                ..weft_store::LogQuery::default()
            })
            .await?;
        if !kept.is_empty() {
            outln!("\noutput: weft logs {id} [STEP] [-f]");
        }
    }
    Ok(0)
}

/// Why a plan that waits for a node is not running (see [`capable::unmet`]); `None` for a
/// plan that is not waiting, or that some live node can run.
async fn waiting_for(
    store: &weft_store::SharedStore,
    snap: &weft_store::PlanSnapshot,
) -> Result<Option<String>, Fail> {
    let waits = matches!(snap.plan.state, plan::State::Planned | plan::State::Running)
        && store.lock_owner(snap.plan.id).await?.is_none();
    if !waits {
        return Ok(None);
    }
    capable::unmet(store, &snap.plan.flow.needs()).await
}
