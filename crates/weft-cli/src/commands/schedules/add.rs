//! `weft schedules add`: start a flow on a cron's ticks, in a time zone.

use crate::shared::{parse_executor, parse_input, Fail, Global};
use clap::Args;
use std::path::PathBuf;
use weft_model::flow::ExecutorKind;
use weft_model::schedule::{CatchUp, Overlap};
use weft_model::{format_millis, now_millis};
use weft_store::ScheduleRecord;

/// `weft schedules add`.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The schedule's name (adding one of an existing name replaces it).
    name: String,
    /// The flow file (TOML).
    flow: PathBuf,
    /// When: a cron expression — `"0 3 * * *"` (minute hour day month weekday), six fields
    /// for seconds first, or `@daily`, `@hourly`, ….
    #[arg(long)]
    cron: String,
    /// The time zone its ticks are read in (the timezone database's names).
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// An input of every plan: NAME=VALUE (a string) or NAME:=JSON. Repeat for more.
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE", value_parser = parse_input)]
    inputs: Vec<(String, serde_json::Value)>,
    /// While the previous plan runs, a tick is skipped (`skip`), waits for it (`queue`), or
    /// starts anyway (`allow`).
    #[arg(long, default_value = "skip")]
    overlap: Overlap,
    /// Ticks missed while no node ran: fire none, the latest (`one`), or every one (`all`).
    #[arg(long, default_value = "none")]
    catch_up: CatchUp,
    /// Where its commands and named tasks run: `local` or `remote`.
    #[arg(long, value_parser = parse_executor)]
    executor: Option<ExecutorKind>,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Adds (or replaces) a schedule.
pub(crate) async fn add(args: AddArgs) -> Result<u8, Fail> {
    if args.name.is_empty() {
        return Err(Fail::Input("a schedule needs a name".into()));
    }
    let mut flow =
        weft_model::flow::file::load(&args.flow).map_err(|e| Fail::Input(e.to_string()))?;
    if let Some(e) = args.executor {
        flow.set_executor(e);
    }
    let inputs = crate::shared::bind_inputs(&flow, args.inputs)?;
    let mut schedule = ScheduleRecord {
        name: args.name,
        flow,
        inputs,
        cron: args.cron,
        timezone: args.timezone,
        overlap: args.overlap,
        catch_up: args.catch_up,
        paused: false,
        next_at: None,
        last_plan: None,
    };
    schedule.next_at = schedule.first_after(now_millis()).map_err(Fail::Input)?;
    let Some(next) = schedule.next_at else {
        return Err(Fail::Input(format!(
            "cron `{}` never fires again",
            schedule.cron
        )));
    };
    let store = weft_store::open(&args.global.db).await?;
    let name = schedule.name.clone();
    store.put_schedule(schedule).await?;
    eprintln!(
        "schedule {name} added; it first fires at {} UTC (a node, weft serve, fires it)",
        format_millis(next)
    );
    Ok(0)
}
