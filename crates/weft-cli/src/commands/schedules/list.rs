//! `weft schedules list`: every schedule with its next fire times.

use crate::shared::view::table;
use crate::shared::{pretty, Fail, Global};
use clap::Args;
use weft_model::format_millis;

/// How many fire times `list` shows per schedule.
const SHOWN: usize = 3;

/// `weft schedules list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Lists schedules.
pub(crate) async fn list(args: ListArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let schedules = store.schedules().await?;
    let upcoming = |s: &weft_store::ScheduleRecord| -> Vec<i64> {
        let Ok((cron, zone)) = s.parsed() else {
            return Vec::new();
        };
        let mut out: Vec<i64> = s.next_at.into_iter().collect();
        while out.len() < SHOWN {
            match out.last().and_then(|&t| cron.next_after(t, &zone)) {
                Some(t) => out.push(t),
                None => break,
            }
        }
        out
    };
    if args.global.json {
        let view: Vec<serde_json::Value> = schedules
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "flow": s.flow.name,
                    "cron": s.cron,
                    "timezone": s.timezone,
                    "overlap": s.overlap,
                    "catch_up": s.catch_up,
                    "paused": s.paused,
                    "next": upcoming(s).into_iter().map(weft_model::time::format_rfc3339).collect::<Vec<_>>(),
                    "last_plan": s.last_plan.map(|p| p.to_string()),
                })
            })
            .collect();
        outln!("{}", pretty(&view)?);
        return Ok(0);
    }
    if schedules.is_empty() {
        outln!("no schedules (weft schedules add NAME FLOW --cron EXPR)");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            let next = if s.paused {
                "paused".to_string()
            } else {
                upcoming(s)
                    .into_iter()
                    .map(|t| {
                        let shown = format_millis(t);
                        shown.get(..16).unwrap_or(&shown).to_string()
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                s.name.clone(),
                s.flow.name.clone(),
                format!("{} ({})", s.cron, s.timezone),
                s.overlap.to_string(),
                next,
                s.last_plan.map(|p| p.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &["NAME", "FLOW", "CRON", "OVERLAP", "NEXT (UTC)", "LAST PLAN"],
            &rows
        )
    );
    Ok(0)
}
