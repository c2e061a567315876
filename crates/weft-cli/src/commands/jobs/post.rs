//! `weft jobs post`: put a flow on the job board for a conductor (`weft serve`) to run.

use crate::shared::{parse_executor, parse_input, parse_priority, pretty, Fail, Global};
use clap::Args;
use std::path::PathBuf;
use weft_model::flow::ExecutorKind;
use weft_model::job::Priority;
use weft_store::NewJob;

/// `weft jobs post`.
#[derive(Debug, Args)]
pub(crate) struct PostArgs {
    /// The flow file (TOML) the job runs.
    flow: PathBuf,
    /// An input: NAME=VALUE (a string) or NAME:=JSON. Repeat for more.
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE", value_parser = parse_input)]
    inputs: Vec<(String, serde_json::Value)>,
    /// How urgent it is: very_high, high, normal, low, very_low.
    #[arg(long, value_parser = parse_priority, default_value = "normal")]
    priority: Priority,
    /// What to call it (default: the flow's name).
    #[arg(long)]
    name: Option<String>,
    /// How many claims it gets before it goes to the trash.
    #[arg(long, default_value_t = weft_model::job::DEFAULT_MAX_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// Where its commands and named tasks run: `local`, or `remote` on workers (`weft
    /// worker`); overrides the flow file.
    #[arg(long, value_parser = parse_executor)]
    executor: Option<ExecutorKind>,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Posts the job; prints its id.
pub(crate) async fn post(args: PostArgs) -> Result<u8, Fail> {
    let mut flow =
        weft_model::flow::file::load(&args.flow).map_err(|e| Fail::Input(e.to_string()))?;
    if let Some(e) = args.executor {
        flow.set_executor(e);
    }
    let inputs = crate::shared::bind_inputs(&flow, args.inputs)?;
    let mut job = NewJob::new(flow, inputs);
    if let Some(name) = args.name {
        job.name = name;
    }
    job.priority = args.priority;
    job.max_attempts = args.max_attempts;
    let store = weft_store::open(&args.global.db).await?;
    let mut job = store.post_job(job).await?;
    if args.global.json {
        job.flow.redact(&mut job.inputs);
        outln!("{}", pretty(&job)?);
    } else {
        outln!("{}", job.id);
    }
    Ok(0)
}
