//! `weft jobs list`: the jobs on the board, in the order conductors claim them.

use crate::shared::{print_jobs, Fail, Global};
use clap::Args;
use weft_store::JobFilter;

/// `weft jobs list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only jobs no one has claimed.
    #[arg(long, conflicts_with = "owner")]
    unclaimed: bool,
    /// Only the jobs this owner (a node's id) holds claimed.
    #[arg(long)]
    owner: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Lists the board: most urgent first, oldest first within a priority.
pub(crate) async fn list(args: ListArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let jobs = store
        .list_jobs(JobFilter {
            only_unclaimed: args.unclaimed,
            trashed: false,
            limit: Some(args.limit),
            owner: args.owner,
        })
        .await?;
    print_jobs(&store, jobs, args.global.json, "no jobs on the board").await?;
    Ok(0)
}
