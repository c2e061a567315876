//! `weft plans prune`: delete stopped plans that ended long enough ago, with their history,
//! events and output, in short batches (nodes keep working meanwhile).

use crate::shared::{parse_duration, Fail, Global};
use clap::Args;
use std::time::Duration;
use weft_model::duration;

/// `weft plans prune`.
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Delete stopped plans that ended more than this long ago (`30d`, `12h`, `0s` for all).
    #[arg(long, value_parser = parse_duration)]
    older_than: Duration,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Prunes.
pub(crate) async fn prune(args: PruneArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let pruned = weft_engine::control::prune(&store, args.older_than).await?;
    if args.global.json {
        outln!("{}", serde_json::json!({ "pruned": pruned }));
    } else {
        eprintln!(
            "pruned {pruned} stopped plan(s) that ended more than {} ago",
            duration::format(args.older_than)
        );
    }
    Ok(0)
}
