//! `weft plans list`: plans, newest first.

use crate::shared::{parse_plan_state, pretty, view, Fail, Global};
use clap::Args;
use weft_model::plan;
use weft_store::PlanFilter;

fn parse_plan_id(text: &str) -> Result<weft_model::PlanId, String> {
    text.parse()
        .map_err(|e| format!("`{text}` is not a whole plan id: {e}"))
}

/// `weft plans list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only plans in this state (pending, planned, running, paused, stopped, …).
    #[arg(long, value_parser = parse_plan_state)]
    state: Option<plan::State>,
    /// Only plans of this flow.
    #[arg(long)]
    flow: Option<String>,
    /// Only plans whose flow's name holds this text, or whose id starts with it.
    #[arg(long)]
    search: Option<String>,
    /// Only plans older than this one (the next page: pass the last id listed).
    #[arg(long, value_parser = parse_plan_id)]
    before: Option<weft_model::PlanId>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Lists plans.
pub(crate) async fn list(args: ListArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let plans = store
        .list_plans(PlanFilter {
            state: args.state,
            flow: args.flow,
            search: args.search,
            before: args.before,
            limit: Some(args.limit),
        })
        .await?;
    if args.global.json {
        outln!("{}", pretty(&plans)?);
    } else {
        out!("{}", view::plan_list(&plans));
    }
    Ok(0)
}
