//! Schedules on PostgreSQL: stored, listed, removed, and fired by the writer — due rows locked
//! with `FOR UPDATE SKIP LOCKED`, so that of racing nodes one fires each tick, in the
//! transaction that creates its plans and moves the schedule on.

use super::Conn;
use crate::codec::{json, to_json};
use crate::schedules::{plans_for, Firing, ScheduleRecord};
use crate::{Error, Result};
use weft_model::{plan, Millis};

/// The schedules' columns, then `$rest` (the statement cache wants `'static` SQL).
macro_rules! select {
    ($rest:literal) => {
        concat!(
            "SELECT name, flow, inputs, cron, timezone, overlap, catch_up, paused, next_at, last_plan
             FROM schedules ",
            $rest
        )
    };
}

fn decode(r: &tokio_postgres::Row) -> Result<ScheduleRecord> {
    let bad = |e: String| Error::Corrupt(format!("schedule: {e}"));
    let last: Option<String> = r.get(9);
    Ok(ScheduleRecord {
        name: r.get(0),
        flow: json(r.get::<_, &str>(1), "flow")?,
        inputs: json(r.get::<_, &str>(2), "inputs")?,
        cron: r.get(3),
        timezone: r.get(4),
        overlap: r.get::<_, &str>(5).parse().map_err(bad)?,
        catch_up: r.get::<_, &str>(6).parse().map_err(bad)?,
        paused: r.get(7),
        next_at: r.get(8),
        last_plan: last
            .map(|l| {
                l.parse()
                    .map_err(|e| Error::Corrupt(format!("schedule's last plan: {e}")))
            })
            .transpose()?,
    })
}

/// Every schedule.
pub(super) async fn list(conn: &mut Conn) -> Result<Vec<ScheduleRecord>> {
    let rows = conn.query(select!("ORDER BY name"), &[]).await?;
    rows.iter().map(decode).collect()
}

/// Stores `s`, replacing one of its name.
pub(super) async fn put(conn: &mut Conn, s: &ScheduleRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO schedules (name, flow, inputs, cron, timezone, overlap, catch_up, paused, next_at, last_plan)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (name) DO UPDATE SET flow = excluded.flow, inputs = excluded.inputs,
           cron = excluded.cron, timezone = excluded.timezone, overlap = excluded.overlap,
           catch_up = excluded.catch_up, paused = excluded.paused, next_at = excluded.next_at,
           last_plan = excluded.last_plan",
        &[
            &s.name,
            &to_json(&s.flow)?,
            &to_json(&s.inputs)?,
            &s.cron,
            &s.timezone,
            &s.overlap.as_str(),
            &s.catch_up.as_str(),
            &s.paused,
            &s.next_at,
            &s.last_plan.map(|p| p.to_string()),
        ],
    )
    .await?;
    Ok(())
}

/// Deletes the schedule `name`.
pub(super) async fn remove(conn: &mut Conn, name: &str) -> Result<()> {
    if conn
        .execute("DELETE FROM schedules WHERE name = $1", &[&name])
        .await?
        == 0
    {
        return Err(Error::NotFound(format!("schedule {name}")));
    }
    Ok(())
}

/// What firing what is due at `now` (or `trigger`, once) does, the due rows locked; the writer
/// creates the plans, then [`advance`]s each schedule, in its transaction.
pub(super) async fn due(
    conn: &mut Conn,
    now: Millis,
    trigger: Option<&str>,
) -> Result<Vec<Firing>> {
    let rows = match trigger {
        Some(name) => {
            let rows = conn
                .query(select!("WHERE name = $1 FOR UPDATE"), &[&name])
                .await?;
            if rows.is_empty() {
                return Err(Error::NotFound(format!("schedule {name}")));
            }
            rows
        }
        None => {
            conn.query(
                select!("WHERE NOT paused AND next_at <= $1 ORDER BY name FOR UPDATE SKIP LOCKED"),
                &[&now],
            )
            .await?
        }
    };
    let mut firings = Vec::new();
    for row in &rows {
        let s = decode(row)?;
        let runs = match s.last_plan {
            None => false,
            Some(p) => conn
                .query_opt("SELECT state FROM plans WHERE id = $1", &[&p.to_string()])
                .await?
                .is_some_and(|r| r.get::<_, &str>(0) != plan::State::Stopped.as_str()),
        };
        let (plans, next_at) = plans_for(&s, now, trigger.is_some(), runs)?;
        firings.push(Firing {
            name: s.name,
            plans,
            next_at,
            previous: s.last_plan,
        });
    }
    Ok(firings)
}

/// Moves a schedule on after its firing's plans were created.
pub(super) async fn advance(conn: &mut Conn, f: &Firing) -> Result<()> {
    conn.execute(
        "UPDATE schedules SET next_at = $1, last_plan = $2 WHERE name = $3",
        &[&f.next_at, &f.last().map(|p| p.to_string()), &f.name],
    )
    .await?;
    Ok(())
}
