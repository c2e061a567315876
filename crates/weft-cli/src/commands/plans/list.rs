//! `weft plans list`: plans, newest first.

use crate::shared::{parse_plan_state, pretty, view, Fail, Global};
use clap::Args;
use weft_model::plan;
use weft_store::PlanFilter;

/// `weft plans list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only plans in this state (pending, planned, running, paused, stopped, …).
    #[arg(long, value_parser = parse_plan_state)]
    state: Option<plan::State>,
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
