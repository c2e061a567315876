//! `weft jobs retry`: put a trashed job back on the board, its attempts reset.

use crate::shared::{pretty, Fail, Global};
use clap::Args;

/// `weft jobs retry`.
#[derive(Debug, Args)]
pub(crate) struct RetryArgs {
    /// The trashed job's id (or a unique prefix of it).
    id: String,
    /// Who puts it back (recorded in its history).
    #[arg(long = "as", value_name = "WHO", default_value = "operator")]
    who: String,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Moves the job from the trash back to the board; it runs as a new plan.
pub(crate) async fn retry(args: RetryArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_job(args.id).await?;
    weft_model::job::check_who(&args.who).map_err(|e| Fail::Input(e.to_string()))?;
    let mut job = store.retry_job(id, args.who).await?;
    if args.global.json {
        job.flow.redact(&mut job.inputs);
        outln!("{}", pretty(&job)?);
    } else {
        outln!(
            "job {id} is back on the board; it will run as plan {}",
            job.plan
        );
    }
    Ok(0)
}
