//! `weft jobs trashed`: the trash — jobs taken off the board as broken, kept for review.

use crate::shared::{print_jobs, Fail, Global};
use clap::Args;
use weft_store::JobFilter;

/// `weft jobs trashed`.
#[derive(Debug, Args)]
pub(crate) struct TrashedArgs {
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Lists the trash, with why each job is there.
pub(crate) async fn trashed(args: TrashedArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let jobs = store
        .list_jobs(JobFilter {
            trashed: true,
            limit: Some(args.limit),
            ..JobFilter::default()
        })
        .await?;
    print_jobs(&store, jobs, args.global.json, "the trash is empty").await?;
    Ok(0)
}
