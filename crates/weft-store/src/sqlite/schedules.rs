//! Schedules on SQLite: stored, listed, removed, and fired by the writer (one transaction
//! creates a tick's plans and moves the schedule on).

use super::classify;
use crate::codec::{json, to_json};
use crate::schedules::{plans_for, Firing, ScheduleRecord};
use crate::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
use weft_model::{plan, Millis};

const COLUMNS: &str =
    "name, flow, inputs, cron, timezone, overlap, catch_up, paused, next_at, last_plan";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<[Option<String>; 8]> {
    Ok([
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(9)?,
    ])
}

fn decode(
    text: [Option<String>; 8],
    paused: bool,
    next_at: Option<Millis>,
) -> Result<ScheduleRecord> {
    let [name, flow, inputs, cron, timezone, overlap, catch_up, last] = text;
    let need = |v: Option<String>, what: &str| {
        v.ok_or_else(|| Error::Corrupt(format!("a schedule without its {what}")))
    };
    let bad = |e: String| Error::Corrupt(format!("schedule: {e}"));
    Ok(ScheduleRecord {
        name: need(name, "name")?,
        flow: json(&need(flow, "flow")?, "flow")?,
        inputs: json(&need(inputs, "inputs")?, "inputs")?,
        cron: need(cron, "cron")?,
        timezone: need(timezone, "timezone")?,
        overlap: need(overlap, "overlap")?.parse().map_err(bad)?,
        catch_up: need(catch_up, "catch_up")?.parse().map_err(bad)?,
        paused,
        next_at,
        last_plan: last
            .map(|l| {
                l.parse()
                    .map_err(|e| Error::Corrupt(format!("schedule's last plan: {e}")))
            })
            .transpose()?,
    })
}

fn select(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<ScheduleRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM schedules {filter} ORDER BY name");
    let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok((
                record(r)?,
                r.get::<_, bool>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ))
        })
        .map_err(classify)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(classify)?;
    rows.into_iter().map(|(t, p, n)| decode(t, p, n)).collect()
}

/// Every schedule.
pub(super) fn list(conn: &Connection) -> Result<Vec<ScheduleRecord>> {
    select(conn, "", [])
}

/// Stores `s`, replacing one of its name.
pub(super) fn put(conn: &Connection, s: &ScheduleRecord) -> Result<()> {
    let (flow, inputs) = (to_json(&s.flow)?, to_json(&s.inputs)?);
    conn.prepare_cached(
        "INSERT INTO schedules (name, flow, inputs, cron, timezone, overlap, catch_up, paused, next_at, last_plan)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (name) DO UPDATE SET flow = excluded.flow, inputs = excluded.inputs,
           cron = excluded.cron, timezone = excluded.timezone, overlap = excluded.overlap,
           catch_up = excluded.catch_up, paused = excluded.paused, next_at = excluded.next_at,
           last_plan = excluded.last_plan",
    )
    .and_then(|mut st| {
        st.execute(params![
            s.name,
            flow,
            inputs,
            s.cron,
            s.timezone,
            s.overlap.as_str(),
            s.catch_up.as_str(),
            s.paused,
            s.next_at,
            s.last_plan.map(|p| p.to_string())
        ])
    })
    .map_err(classify)?;
    Ok(())
}

/// Deletes the schedule `name`.
pub(super) fn remove(conn: &Connection, name: &str) -> Result<()> {
    let n = conn
        .prepare_cached("DELETE FROM schedules WHERE name = ?1")
        .and_then(|mut s| s.execute([name]))
        .map_err(classify)?;
    if n == 0 {
        return Err(Error::NotFound(format!("schedule {name}")));
    }
    Ok(())
}

/// What firing what is due at `now` (or `trigger`, once) does; the writer creates the plans,
/// then [`advance`]s each schedule, in its transaction.
pub(super) fn due(conn: &Connection, now: Millis, trigger: Option<&str>) -> Result<Vec<Firing>> {
    let due = match trigger {
        Some(name) => {
            let found = select(conn, "WHERE name = ?1", [name])?;
            if found.is_empty() {
                return Err(Error::NotFound(format!("schedule {name}")));
            }
            found
        }
        None => select(conn, "WHERE paused = 0 AND next_at <= ?1", [now])?,
    };
    let mut firings = Vec::new();
    for s in due {
        let runs = match s.last_plan {
            None => false,
            Some(p) => conn
                .prepare_cached("SELECT state FROM plans WHERE id = ?1")
                .and_then(|mut st| {
                    st.query_row([p.to_string()], |r| r.get::<_, String>(0))
                        .optional()
                })
                .map_err(classify)?
                .is_some_and(|state| state != plan::State::Stopped.as_str()),
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
pub(super) fn advance(conn: &Connection, f: &Firing) -> Result<()> {
    conn.prepare_cached("UPDATE schedules SET next_at = ?1, last_plan = ?2 WHERE name = ?3")
        .and_then(|mut st| st.execute(params![f.next_at, f.last().map(|p| p.to_string()), f.name]))
        .map_err(classify)?;
    Ok(())
}
