//! `weft jobs trash`: take a broken job off the board, keeping it in the trash for review.

use crate::shared::{pretty, Fail, Global};
use clap::Args;
use weft_model::job::Release;

/// `weft jobs trash`.
#[derive(Debug, Args)]
pub(crate) struct TrashArgs {
    /// The job's id (or a unique prefix of it).
    id: String,
    /// Who trashes it: only the job's owner may, unless --force.
    #[arg(long = "as", value_name = "WHO", default_value = "operator")]
    who: String,
    /// Trash it though it is not yours — claimed by a conductor, or not claimed at all.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Trashes the job.
pub(crate) async fn trash(args: TrashArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_job(args.id).await?;
    let how = Release::Trash { force: args.force };
    let mut job = store
        .release_job(id, args.who, None, how)
        .await
        .map_err(|e| match e {
            weft_store::Error::Job(b @ weft_model::job::BoardError::JobFailure(_))
            | weft_store::Error::Job(b @ weft_model::job::BoardError::NotFound(_))
                if !args.force =>
            {
                Fail::Input(format!(
                    "{b}; an operator trashes a job that is not theirs with --force"
                ))
            }
            e => e.into(),
        })?;
    if args.global.json {
        job.flow.redact(&mut job.inputs);
        outln!("{}", pretty(&job)?);
    } else {
        outln!("trashed job {id} ({})", job.name);
    }
    Ok(0)
}
