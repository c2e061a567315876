//! `weft plans history`: every transition of a plan and its steps, with why.

use crate::shared::{pretty, view, Fail, Global};
use clap::Args;

/// `weft plans history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// The plan's id (or a unique prefix of it).
    id: String,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Prints a plan's history.
pub(crate) async fn history(args: HistoryArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_id(args.id).await?;
    let snap = store.load_plan(id).await?;
    let history = store.history(id).await?;
    if args.global.json {
        outln!("{}", pretty(&history)?);
    } else {
        out!("{}", view::history(&snap, &history));
    }
    Ok(0)
}
