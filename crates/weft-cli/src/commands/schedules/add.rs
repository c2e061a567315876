//! `weft schedules add`: start a flow on a cron's ticks, in a time zone.

use crate::shared::{parse_executor, parse_input, Fail, Global};
use clap::Args;
use std::path::PathBuf;
use weft_model::flow::ExecutorKind;
use weft_model::format_millis;
use weft_model::schedule::{CatchUp, Overlap};

/// `weft schedules add`.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The schedule's name (adding one of an existing name replaces it).
    name: String,
    /// The flow file (TOML). Its `[schedule]` table, if any, gives what the options below
    /// leave out.
    flow: PathBuf,
    /// When: a cron expression — `"0 3 * * *"` (minute hour day month weekday), six fields
    /// for seconds first, or `@daily`, `@hourly`, …. Needed unless the file has `[schedule]`.
    #[arg(long)]
    cron: Option<String>,
    /// The time zone its ticks are read in (the timezone database's names; default UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// An input of every plan: NAME=VALUE (a string) or NAME:=JSON. Repeat for more; they
    /// replace the `[schedule]` table's inputs of the same name.
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE", value_parser = parse_input)]
    inputs: Vec<(String, serde_json::Value)>,
    /// While the previous plan runs, a tick is skipped (`skip`, the default), waits for it
    /// (`queue`), or starts anyway (`allow`).
    #[arg(long)]
    overlap: Option<Overlap>,
    /// Ticks missed while no node ran: fire none (the default), the latest (`one`), or every
    /// one (`all`).
    #[arg(long)]
    catch_up: Option<CatchUp>,
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
    let spec = flow.schedule.clone();
    let Some(cron) = args.cron.or_else(|| spec.as_ref().map(|s| s.cron.clone())) else {
        return Err(Fail::Input(format!(
            "{} has no [schedule] table: say when with --cron",
            args.flow.display()
        )));
    };
    let mut given: std::collections::BTreeMap<String, serde_json::Value> = spec
        .as_ref()
        .map(|s| s.inputs.clone().into_iter().collect())
        .unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in args.inputs {
        if !seen.insert(name.clone()) {
            return Err(Fail::Input(format!("input `{name}` is given twice")));
        }
        given.insert(name, value);
    }
    let inputs = crate::shared::bind_inputs(&flow, given.into_iter().collect())?;
    let schedule = crate::shared::schedule::record(
        args.name,
        flow,
        cron,
        args.timezone
            .or_else(|| spec.as_ref().map(|s| s.timezone.clone()))
            .unwrap_or_else(|| "UTC".into()),
        inputs,
        args.overlap
            .or_else(|| spec.as_ref().map(|s| s.overlap))
            .unwrap_or_default(),
        args.catch_up
            .or_else(|| spec.as_ref().map(|s| s.catch_up))
            .unwrap_or_default(),
    )?;
    let next = schedule.next_at.unwrap_or_default();
    let store = weft_store::open(&args.global.db).await?;
    let name = schedule.name.clone();
    store.put_schedule(schedule).await?;
    eprintln!(
        "schedule {name} added; it first fires at {} UTC (a node, weft serve, fires it)",
        format_millis(next)
    );
    Ok(0)
}
