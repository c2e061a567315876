//! `weft workers`: the remote workers registered in the store.

use crate::shared::{pretty, workers, Fail, Global};
use clap::Args;

/// `weft workers`.
#[derive(Debug, Args)]
pub(crate) struct WorkersArgs {
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Lists the workers: topic, last seen, running requests, process and tasks.
pub(crate) async fn list(args: WorkersArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let all = store.workers().await?;
    let now = store.clock().await?;
    if args.global.json {
        outln!("{}", pretty(&workers::json(&all, now))?);
    } else if all.is_empty() {
        outln!(
            "no workers are registered (start one with: weft worker --topic T --tasks FLOW.toml)"
        );
    } else {
        out!("{}", workers::text(&all, now));
    }
    Ok(0)
}
