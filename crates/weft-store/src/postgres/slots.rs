//! Slots and queues on PostgreSQL: the writer asks for slots inside its transaction under one
//! advisory lock, so that racing nodes take turns and no scope is ever granted past its limit;
//! the clock is the database's. Releases (`Change::Release`, the writer's `RELEASE_SLOTS_MANY`)
//! only delete, and need no lock.

use super::Conn;
use crate::slots::{
    decide, step_column, step_of_column, Decision, Line, QueueRecord, SlotRow, STALE,
};
use crate::{Error, Result, SlotAnswer, SlotRequest};
use std::time::Duration;
use weft_model::limit::Rate;
use weft_model::PlanId;

/// The advisory lock every slot request of every node takes for its transaction.
const SLOTS_LOCK: i64 = 0x7765_6674_0002;

/// A slot row's columns, then `$rest`.
macro_rules! select {
    ($rest:literal) => {
        concat!(
            "SELECT scope, key, plan_id, step, owner, held, seq, since, why FROM slots ",
            $rest
        )
    };
}

fn row(r: &tokio_postgres::Row) -> Result<SlotRow> {
    let plan: &str = r.get(2);
    Ok(SlotRow {
        scope: r.get(0),
        key: r.get(1),
        plan: plan
            .parse()
            .map_err(|e| Error::Corrupt(format!("slot's plan `{plan}`: {e}")))?,
        step: step_of_column(i64::from(r.get::<_, i32>(3))),
        owner: r.get(4),
        held: r.get(5),
        seq: r.get(6),
        since: r.get(7),
        why: r.get(8),
    })
}

fn queue(r: &tokio_postgres::Row) -> QueueRecord {
    let count: Option<i32> = r.get(2);
    let per: Option<i64> = r.get(3);
    QueueRecord {
        name: r.get(0),
        limit: r.get::<_, Option<i32>>(1).map(|l| l.max(0) as u32),
        rate: count.zip(per).map(|(count, per)| Rate {
            count: count.max(1) as u32,
            per: Duration::from_millis(per.max(1) as u64),
        }),
        tokens: r.get(4),
        refilled_at: r.get(5),
        held: r.get::<_, Option<i64>>(6).unwrap_or(0) as u32,
        waiting: r.get::<_, Option<i64>>(7).unwrap_or(0) as u32,
    }
}

/// A fresh request for one concurrency slot, granted or not in one statement: inserted held
/// when the slots held plus the live places in line (all ahead of a newcomer) leave room under
/// the limit; a place already taken is only touched (the slow path decides it). No row back:
/// the asker does not hold the plan's lock.
const FAST: &str = "INSERT INTO slots AS s (plan_id, step, scope, key, owner, since, polled, held)
    SELECT $1, $2, $3, $4, $5, $6, $6,
           (SELECT count(*) FROM slots o
            WHERE o.scope = $3 AND o.key = $4 AND (o.held OR o.polled >= $7)) < $8
    WHERE EXISTS (SELECT 1 FROM locks WHERE plan_id = $1 AND owner = $5)
    ON CONFLICT (plan_id, step, scope) DO UPDATE SET polled = excluded.polled
    RETURNING held";

/// Every slot request of a writer's transaction (which the writer takes after its other
/// writes): the advisory lock once, then each request for a single concurrency slot asked in
/// one statement, all of them pipelined; what that does not grant — places already in line,
/// several slots, queues — goes the whole way, one by one. Errors stop at the first.
pub(super) async fn acquire_all(
    conn: &mut Conn,
    requests: &[&SlotRequest],
) -> Result<Vec<SlotAnswer>> {
    let now: i64 = conn
        .query_opt(
            "SELECT pg_advisory_xact_lock($1),
                    (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            &[&SLOTS_LOCK],
        )
        .await?
        .map(|r| r.get(1))
        .ok_or_else(|| Error::Backend("no clock".into()))?;
    let fast = conn.prepare(FAST).await?;
    let stale = now - STALE;
    let simple = |r: &SlotRequest| r.wants.len() == 1 && r.wants[0].queue().is_none();
    let params: Vec<(String, i32, i64)> = requests
        .iter()
        .map(|r| {
            (
                r.plan.to_string(),
                step_column(r.step) as i32,
                i64::from(r.wants.first().and_then(|w| w.limit).unwrap_or(0)),
            )
        })
        .collect();
    let client = &conn.client;
    let asks = requests
        .iter()
        .zip(&params)
        .map(|(r, (plan, step, limit))| {
            let fast = &fast;
            async move {
                if !simple(r) {
                    return Ok(None);
                }
                let w = &r.wants[0];
                client
                    .query_opt(
                        fast,
                        &[plan, step, &w.scope, &w.key, &r.owner, &now, &stale, limit],
                    )
                    .await
                    .map(|row| Some(row.map(|row| row.get::<_, bool>(0))))
            }
        });
    let quick = futures_util::future::join_all(asks).await;
    let mut out = Vec::with_capacity(requests.len());
    for (r, answer) in requests.iter().zip(quick) {
        out.push(match answer.map_err(super::classify)? {
            Some(None) => SlotAnswer::Gone,
            Some(Some(true)) => SlotAnswer::Granted,
            // In line, or more than one slot: the whole way.
            Some(Some(false)) | None => acquire(conn, r).await?,
        });
    }
    Ok(out)
}

/// Asks for a request's slots (see `crate::slots`).
pub(super) async fn acquire(conn: &mut Conn, req: &SlotRequest) -> Result<SlotAnswer> {
    let plan = req.plan.to_string();
    let step = step_column(req.step) as i32;
    let owner = conn
        .query_opt("SELECT owner FROM locks WHERE plan_id = $1", &[&plan])
        .await?
        .map(|r| r.get::<_, String>(0));
    if owner.as_deref() != Some(req.owner.as_str()) {
        return Ok(SlotAnswer::Gone);
    }
    let now: i64 = conn
        .query_opt(
            "SELECT pg_advisory_xact_lock($1),
                    (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            &[&SLOTS_LOCK],
        )
        .await?
        .map(|r| r.get(1))
        .ok_or_else(|| Error::Backend("no clock".into()))?;
    let mut mine = Vec::with_capacity(req.wants.len());
    for want in &req.wants {
        let row = conn
            .query_opt(
                "INSERT INTO slots (plan_id, step, scope, key, owner, since, polled)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)
                 ON CONFLICT (plan_id, step, scope) DO UPDATE SET polled = excluded.polled
                 RETURNING seq, held",
                &[&plan, &step, &want.scope, &want.key, &req.owner, &now],
            )
            .await?
            .ok_or_else(|| Error::Backend("a slot's row was not written".into()))?;
        mine.push((row.get::<_, i64>(0), row.get::<_, bool>(1)));
    }
    let mut decision = decide(req, scopes(conn, req, &mine).await?, now);
    if matches!(decision, Decision::Wait(_)) {
        // Places of owners gone quiet are dropped before the request waits behind them.
        let mut dropped = 0;
        for want in &req.wants {
            dropped += conn
                .execute(
                    "DELETE FROM slots WHERE scope = $1 AND NOT held AND polled < $2",
                    &[&want.scope, &(now - STALE)],
                )
                .await?;
        }
        if dropped > 0 {
            decision = decide(req, scopes(conn, req, &mine).await?, now);
        }
    }
    match decision {
        Decision::Grant(buckets) => {
            if mine.iter().any(|(_, held)| !held) {
                conn.execute(
                    "UPDATE slots SET held = true, since = $3, why = NULL
                     WHERE plan_id = $1 AND step = $2 AND NOT held",
                    &[&plan, &step, &now],
                )
                .await?;
            }
            for q in buckets {
                conn.execute(
                    "UPDATE queues SET tokens = $2, refilled_at = $3 WHERE name = $1",
                    &[&q.name, &q.tokens, &q.refilled_at],
                )
                .await?;
            }
            Ok(SlotAnswer::Granted)
        }
        Decision::Wait(b) => {
            conn.execute(
                "UPDATE slots SET why = $3 WHERE plan_id = $1 AND step = $2",
                &[&plan, &step, &b.why],
            )
            .await?;
            Ok(SlotAnswer::Waiting {
                on: b.why,
                retry: b.retry,
            })
        }
    }
}

/// The request's line in each wanted scope, with the scope's queue: a key's line by counting
/// (an index covers it), a queue's from its rows (fairness looks at every key).
async fn scopes(
    conn: &mut Conn,
    req: &SlotRequest,
    mine: &[(i64, bool)],
) -> Result<Vec<(Option<Line>, Option<QueueRecord>)>> {
    let mut out = Vec::with_capacity(req.wants.len());
    for (want, &(seq, mine_held)) in req.wants.iter().zip(mine) {
        let Some(name) = want.queue() else {
            let row = conn
                .query_opt(
                    "SELECT count(*) FILTER (WHERE held), count(*) FILTER (WHERE NOT held AND seq < $3)
                     FROM slots WHERE scope = $1 AND key = $2",
                    &[&want.scope, &want.key, &seq],
                )
                .await?
                .ok_or_else(|| Error::Backend("no count".into()))?;
            let line = Line {
                mine_held,
                held: row.get::<_, i64>(0) as usize,
                ahead: row.get::<_, i64>(1) as usize,
            };
            out.push((Some(line), None));
            continue;
        };
        let live = conn
            .query(select!("WHERE scope = $1"), &[&want.scope])
            .await?
            .iter()
            .map(row)
            .collect::<Result<Vec<_>>>()?;
        let line = live
            .iter()
            .find(|r| r.plan == req.plan && r.step == req.step)
            .map(|me| Line::of(want, me, &live));
        let q = conn
            .query_opt(
                "SELECT name, lim, rate_count, rate_ms, tokens, refilled_at, NULL::bigint, NULL::bigint
                 FROM queues WHERE name = $1",
                &[&name],
            )
            .await?
            .map(|r| queue(&r));
        out.push((line, q));
    }
    Ok(out)
}

/// Drops an owner's rows (its lease lapsed, or it let its locks go).
pub(super) async fn drop_owner(conn: &mut Conn, owner: &str) -> Result<()> {
    conn.execute("DELETE FROM slots WHERE owner = $1", &[&owner])
        .await?;
    Ok(())
}

/// A plan's rows.
pub(super) async fn of(conn: &mut Conn, plan: PlanId) -> Result<Vec<SlotRow>> {
    conn.query(
        select!("WHERE plan_id = $1 ORDER BY step, scope"),
        &[&plan.to_string()],
    )
    .await?
    .iter()
    .map(row)
    .collect()
}

/// Stores a queue's settings (its bucket as given: full for a new setting).
pub(super) async fn put_queue(conn: &mut Conn, q: &QueueRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO queues (name, lim, rate_count, rate_ms, tokens, refilled_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO UPDATE SET lim = excluded.lim, rate_count = excluded.rate_count,
           rate_ms = excluded.rate_ms, tokens = excluded.tokens, refilled_at = excluded.refilled_at",
        &[
            &q.name,
            &q.limit.map(|l| l.min(i32::MAX as u32) as i32),
            &q.rate.map(|r| r.count.min(i32::MAX as u32) as i32),
            &q.rate.map(|r| r.per.as_millis() as i64),
            &q.tokens,
            &q.refilled_at,
        ],
    )
    .await?;
    Ok(())
}

/// Every queue with what it holds.
pub(super) async fn queues(conn: &mut Conn) -> Result<Vec<QueueRecord>> {
    Ok(conn
        .query(
            "SELECT name, lim, rate_count, rate_ms, tokens, refilled_at,
               (SELECT count(*) FROM slots WHERE scope = 'queue:' || name AND held),
               (SELECT count(*) FROM slots WHERE scope = 'queue:' || name AND NOT held)
             FROM queues ORDER BY name",
            &[],
        )
        .await?
        .iter()
        .map(queue)
        .collect())
}

/// Deletes a queue's settings.
pub(super) async fn remove_queue(conn: &mut Conn, name: &str) -> Result<()> {
    if conn
        .execute("DELETE FROM queues WHERE name = $1", &[&name])
        .await?
        == 0
    {
        return Err(Error::NotFound(format!("no queue `{name}`")));
    }
    Ok(())
}
