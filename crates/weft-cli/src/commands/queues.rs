//! `weft queues`: named queues that flows and tasks take slots in (`queue = "NAME"`) — set a
//! queue's limit and rate, list queues with what they hold, remove a queue's settings.

use crate::shared::view::table;
use crate::shared::{pretty, Fail, Global};
use clap::Args;
use weft_model::limit::{check_queue_name, Rate};
use weft_store::QueueRecord;

/// `weft queues set`.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// The queue's name (letters, digits, `.`, `_`, `-`).
    name: String,
    /// At most this many plans or steps hold a slot in it at once, across every key.
    #[arg(long)]
    limit: Option<u32>,
    /// At most this many start per period: `100/m`, `5/s`, `1000/h`, `10/30s`.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<Rate>,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// `weft queues list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) global: Global,
}

/// `weft queues remove`.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The queue's name.
    name: String,
    #[command(flatten)]
    pub(crate) global: Global,
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    text.parse()
}

/// Sets a queue's limit and rate (its rate's bucket starts full).
pub(crate) async fn set(args: SetArgs) -> Result<u8, Fail> {
    check_queue_name(&args.name).map_err(Fail::Input)?;
    if args.limit.is_none() && args.rate.is_none() {
        return Err(Fail::Input(
            "say what the queue allows: --limit N, --rate COUNT/PERIOD, or both".into(),
        ));
    }
    if args.limit == Some(0) {
        return Err(Fail::Input(
            "--limit 0 would hold everything back for ever; use at least 1".into(),
        ));
    }
    let store = weft_store::open(&args.global.db).await?;
    let now = store.clock().await?;
    store
        .put_queue(QueueRecord::new(
            args.name.clone(),
            args.limit,
            args.rate,
            now,
        ))
        .await?;
    eprintln!("queue {} set", args.name);
    Ok(0)
}

/// Lists queues.
pub(crate) async fn list(args: ListArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let queues = store.queues().await?;
    if args.global.json {
        outln!("{}", pretty(&queues)?);
        return Ok(0);
    }
    if queues.is_empty() {
        outln!("no queues (weft queues set NAME --limit N --rate COUNT/PERIOD)");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            vec![
                q.name.clone(),
                q.limit.map_or("-".into(), |l| l.to_string()),
                q.rate.map_or("-".into(), |r| r.to_string()),
                q.held.to_string(),
                q.waiting.to_string(),
            ]
        })
        .collect();
    out!(
        "{}",
        table(&["NAME", "LIMIT", "RATE", "HELD", "WAITING"], &rows)
    );
    Ok(0)
}

/// Removes a queue's settings: what waits in it goes on.
pub(crate) async fn remove(args: RemoveArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    store.remove_queue(args.name.clone()).await?;
    eprintln!("queue {} removed", args.name);
    Ok(0)
}
