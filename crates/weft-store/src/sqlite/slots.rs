//! Slots and queues on SQLite: the writer asks for slots inside its transaction (one writer:
//! nothing races it), with the rules of `crate::slots`; readers list them.

use super::classify;
use crate::slots::{
    decide, step_column, step_of_column, Decision, Line, QueueRecord, SlotRow, STALE,
};
use crate::{Error, Result, SlotAnswer, SlotRequest};
use rusqlite::{params, Connection, OptionalExtension};
use std::time::Duration;
use weft_model::limit::Rate;
use weft_model::{Millis, PlanId};

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SlotRow> {
    let plan: String = r.get(2)?;
    Ok(SlotRow {
        scope: r.get(0)?,
        key: r.get(1)?,
        plan: plan.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?,
        step: step_of_column(r.get(3)?),
        owner: r.get(4)?,
        held: r.get(5)?,
        seq: r.get(6)?,
        since: r.get(7)?,
        why: r.get(8)?,
    })
}

fn rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    p: impl rusqlite::Params,
) -> Result<Vec<SlotRow>> {
    stmt.query_map(p, row)
        .map_err(classify)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(classify)
}

fn queue(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRecord> {
    let count: Option<u32> = r.get(2)?;
    let per: Option<i64> = r.get(3)?;
    Ok(QueueRecord {
        name: r.get(0)?,
        limit: r.get(1)?,
        rate: count.zip(per).map(|(count, per)| Rate {
            count,
            per: Duration::from_millis(per.max(1) as u64),
        }),
        tokens: r.get(4)?,
        refilled_at: r.get(5)?,
        held: r.get::<_, Option<u32>>(6)?.unwrap_or(0),
        waiting: r.get::<_, Option<u32>>(7)?.unwrap_or(0),
    })
}

/// Asks for a request's slots at `now` (see `crate::slots`).
pub(super) fn acquire(conn: &Connection, req: &SlotRequest, now: Millis) -> Result<SlotAnswer> {
    let plan = req.plan.to_string();
    let step = step_column(req.step);
    if let [want] = req.wants.as_slice() {
        if let (None, Some(limit)) = (want.queue(), want.limit) {
            // One concurrency slot: a newcomer is granted in the statement that places it.
            let held: Option<bool> = conn
                .prepare_cached(
                    "INSERT INTO slots (plan_id, step, scope, key, owner, seq, since, polled, held)
                     SELECT ?1, ?2, ?3, ?4, ?5, coalesce((SELECT max(rowid) FROM slots), 0) + 1,
                            ?6, ?6,
                            (SELECT count(*) FROM slots o
                             WHERE o.scope = ?3 AND o.key = ?4 AND (o.held OR o.polled >= ?7)) < ?8
                     WHERE EXISTS (SELECT 1 FROM locks WHERE plan_id = ?1 AND owner = ?5)
                     ON CONFLICT (plan_id, step, scope) DO UPDATE SET polled = excluded.polled
                     RETURNING held",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![
                            plan,
                            step,
                            want.scope,
                            want.key,
                            req.owner,
                            now,
                            now - STALE,
                            limit
                        ],
                        |r| r.get(0),
                    )
                    .optional()
                })
                .map_err(classify)?;
            match held {
                None => return Ok(SlotAnswer::Gone),
                Some(true) => return Ok(SlotAnswer::Granted),
                // In line: the whole way, to say why.
                Some(false) => {}
            }
        }
    }
    let mut mine = Vec::with_capacity(req.wants.len());
    // A place is taken (or kept) only while the asker holds the plan's lock; `seq` is the new
    // row's rowid (`max(rowid)` is one look at the table's b-tree; `max(seq)` would read every
    // row).
    for want in &req.wants {
        let row: Option<(i64, bool)> = conn
            .prepare_cached(
                "INSERT INTO slots (plan_id, step, scope, key, owner, seq, since, polled)
                 SELECT ?1, ?2, ?3, ?4, ?5, coalesce((SELECT max(rowid) FROM slots), 0) + 1, ?6, ?6
                 WHERE EXISTS (SELECT 1 FROM locks WHERE plan_id = ?1 AND owner = ?5)
                 ON CONFLICT (plan_id, step, scope) DO UPDATE SET polled = excluded.polled
                 RETURNING seq, held",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![plan, step, want.scope, want.key, req.owner, now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
            })
            .map_err(classify)?;
        match row {
            Some(row) => mine.push(row),
            None => return Ok(SlotAnswer::Gone),
        }
    }
    let mut decision = decide(req, scopes(conn, req, &mine)?, now);
    if matches!(decision, Decision::Wait(_)) {
        // Places of owners gone quiet are dropped before the request waits behind them.
        let mut dropped = 0;
        for want in &req.wants {
            dropped += conn
                .prepare_cached("DELETE FROM slots WHERE scope = ?1 AND held = 0 AND polled < ?2")
                .and_then(|mut s| s.execute(params![want.scope, now - STALE]))
                .map_err(classify)?;
        }
        if dropped > 0 {
            decision = decide(req, scopes(conn, req, &mine)?, now);
        }
    }
    match decision {
        Decision::Grant(buckets) => {
            if mine.iter().any(|(_, held)| !held) {
                conn.prepare_cached(
                    "UPDATE slots SET held = 1, since = ?3, why = NULL
                     WHERE plan_id = ?1 AND step = ?2 AND held = 0",
                )
                .and_then(|mut s| s.execute(params![plan, step, now]))
                .map_err(classify)?;
            }
            for q in buckets {
                conn.prepare_cached(
                    "UPDATE queues SET tokens = ?2, refilled_at = ?3 WHERE name = ?1",
                )
                .and_then(|mut s| s.execute(params![q.name, q.tokens, q.refilled_at]))
                .map_err(classify)?;
            }
            Ok(SlotAnswer::Granted)
        }
        Decision::Wait(b) => {
            conn.prepare_cached("UPDATE slots SET why = ?3 WHERE plan_id = ?1 AND step = ?2")
                .and_then(|mut s| s.execute(params![plan, step, b.why]))
                .map_err(classify)?;
            Ok(SlotAnswer::Waiting {
                on: b.why,
                retry: b.retry,
            })
        }
    }
}

/// The request's line in each wanted scope, with the scope's queue: a key's line by counting
/// (an index covers it), a queue's from its rows (fairness looks at every key).
fn scopes(
    conn: &Connection,
    req: &SlotRequest,
    mine: &[(i64, bool)],
) -> Result<Vec<(Option<Line>, Option<QueueRecord>)>> {
    let mut out = Vec::with_capacity(req.wants.len());
    for (want, &(seq, mine_held)) in req.wants.iter().zip(mine) {
        let Some(name) = want.queue() else {
            let (held, ahead): (i64, i64) = conn
                .prepare_cached(
                    "SELECT coalesce(sum(held), 0), coalesce(sum(held = 0 AND seq < ?3), 0)
                     FROM slots WHERE scope = ?1 AND key = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![want.scope, want.key, seq], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                })
                .map_err(classify)?;
            let line = Line {
                mine_held,
                held: held as usize,
                ahead: ahead as usize,
            };
            out.push((Some(line), None));
            continue;
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT scope, key, plan_id, step, owner, held, seq, since, why FROM slots
                 WHERE scope = ?1",
            )
            .map_err(classify)?;
        let live = rows(&mut stmt, [&want.scope])?;
        let line = live
            .iter()
            .find(|r| r.plan == req.plan && r.step == req.step)
            .map(|me| Line::of(want, me, &live));
        let q = conn
            .prepare_cached(
                "SELECT name, lim, rate_count, rate_ms, tokens, refilled_at, NULL, NULL
                 FROM queues WHERE name = ?1",
            )
            .and_then(|mut s| s.query_row([name], queue).optional())
            .map_err(classify)?;
        out.push((line, q));
    }
    Ok(out)
}

/// Gives back a step's slots, or all of a plan's.
pub(super) fn release(conn: &Connection, plan: PlanId, step: Option<u32>) -> Result<()> {
    let plan = plan.to_string();
    match step {
        Some(s) => conn
            .prepare_cached("DELETE FROM slots WHERE plan_id = ?1 AND step = ?2")
            .and_then(|mut st| st.execute(params![plan, i64::from(s)])),
        None => conn
            .prepare_cached("DELETE FROM slots WHERE plan_id = ?1")
            .and_then(|mut st| st.execute([plan])),
    }
    .map_err(classify)?;
    Ok(())
}

/// Drops an owner's rows (its lease lapsed, or it let its locks go).
pub(super) fn drop_owner(conn: &Connection, owner: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM slots WHERE owner = ?1")
        .and_then(|mut s| s.execute([owner]))
        .map_err(classify)?;
    Ok(())
}

/// A plan's rows.
pub(super) fn of(conn: &Connection, plan: PlanId) -> Result<Vec<SlotRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT scope, key, plan_id, step, owner, held, seq, since, why FROM slots
             WHERE plan_id = ?1 ORDER BY step, scope",
        )
        .map_err(classify)?;
    rows(&mut stmt, [plan.to_string()])
}

/// Stores a queue's settings (its bucket as given: full for a new setting).
pub(super) fn put_queue(conn: &Connection, q: &QueueRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO queues (name, lim, rate_count, rate_ms, tokens, refilled_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (name) DO UPDATE SET lim = excluded.lim, rate_count = excluded.rate_count,
           rate_ms = excluded.rate_ms, tokens = excluded.tokens, refilled_at = excluded.refilled_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            q.name,
            q.limit,
            q.rate.map(|r| r.count),
            q.rate.map(|r| r.per.as_millis() as i64),
            q.tokens,
            q.refilled_at
        ])
    })
    .map_err(classify)?;
    Ok(())
}

/// Every queue with what it holds.
pub(super) fn queues(conn: &Connection) -> Result<Vec<QueueRecord>> {
    conn.prepare_cached(
        "SELECT name, lim, rate_count, rate_ms, tokens, refilled_at,
           (SELECT count(*) FROM slots WHERE scope = 'queue:' || name AND held = 1),
           (SELECT count(*) FROM slots WHERE scope = 'queue:' || name AND held = 0)
         FROM queues ORDER BY name",
    )
    .and_then(|mut s| {
        s.query_map([], queue)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(classify)
}

/// Deletes a queue's settings.
pub(super) fn remove_queue(conn: &Connection, name: &str) -> Result<()> {
    let n = conn
        .prepare_cached("DELETE FROM queues WHERE name = ?1")
        .and_then(|mut s| s.execute([name]))
        .map_err(classify)?;
    if n == 0 {
        return Err(Error::NotFound(format!("no queue `{name}`")));
    }
    Ok(())
}
