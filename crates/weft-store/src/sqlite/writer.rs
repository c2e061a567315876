//! The writer thread: the only owner of the write connection, and the group commit.

use super::classify;
use crate::{Change, Error, NewPlan, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::mpsc;
use tokio::sync::oneshot;
use weft_model::{now_millis, PlanId};

/// The most requests one transaction takes, so that a flood still gets answered promptly.
const MAX_BATCH: usize = 4096;

/// A write and where to send its result.
pub(super) struct Request {
    pub write: Write,
    pub reply: oneshot::Sender<Result<()>>,
}

/// What to write.
pub(super) enum Write {
    Create(Box<NewPlan>),
    Apply(Vec<Change>),
    Acquire(PlanId, String),
    Release(PlanId, Option<String>),
}

/// Serves requests until every sender is gone.
pub(super) fn run(mut conn: Connection, rx: mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let results = commit(&mut conn, &batch);
        for (req, result) in batch.into_iter().zip(results) {
            // The caller may have gone away; its write landed all the same.
            let _ = req.reply.send(result);
        }
    }
}

/// Applies every request in one transaction, each in a savepoint; returns each one's result.
fn commit(conn: &mut Connection, batch: &[Request]) -> Vec<Result<()>> {
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = classify(e);
            return batch.iter().map(|_| Err(e.clone())).collect();
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    for req in batch {
        let outcome = (|| -> Result<()> {
            tx.execute_batch("SAVEPOINT w").map_err(classify)?;
            match apply(&tx, &req.write) {
                Ok(()) => tx.execute_batch("RELEASE w").map_err(classify),
                Err(e) => {
                    tx.execute_batch("ROLLBACK TO w; RELEASE w")
                        .map_err(classify)?;
                    Err(e)
                }
            }
        })();
        results.push(outcome);
    }
    if let Err(e) = tx.commit() {
        let e = classify(e);
        return batch.iter().map(|_| Err(e.clone())).collect();
    }
    results
}

fn apply(conn: &Connection, write: &Write) -> Result<()> {
    match write {
        Write::Create(plan) => create(conn, plan),
        Write::Apply(changes) => changes.iter().try_for_each(|c| change(conn, c)),
        Write::Acquire(plan, owner) => {
            let key = plan.to_string();
            let exists: Option<i64> = conn
                .query_row("SELECT 1 FROM plans WHERE id = ?1", [&key], |r| r.get(0))
                .optional()
                .map_err(classify)?;
            if exists.is_none() {
                return Err(Error::NotFound(key));
            }
            let holder: Option<String> = conn
                .query_row("SELECT owner FROM locks WHERE plan_id = ?1", [&key], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(classify)?;
            match holder {
                Some(h) if h != *owner => Err(Error::Locked {
                    plan: *plan,
                    owner: h,
                }),
                Some(_) => Ok(()),
                None => conn
                    .execute(
                        "INSERT INTO locks (plan_id, owner, acquired_at) VALUES (?1, ?2, ?3)",
                        params![key, owner, now_millis()],
                    )
                    .map(drop)
                    .map_err(classify),
            }
        }
        Write::Release(plan, owner) => conn
            .execute(
                "DELETE FROM locks WHERE plan_id = ?1 AND (?2 IS NULL OR owner = ?2)",
                params![plan.to_string(), owner],
            )
            .map(drop)
            .map_err(classify),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Backend(format!("cannot serialize: {e}")))
}

fn create(conn: &Connection, plan: &NewPlan) -> Result<()> {
    let (record, steps) = plan.records();
    let key = record.id.to_string();
    let flow = to_json(&record.flow)?;
    let inputs = to_json(&record.inputs)?;
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO plans (id, flow_name, flow, inputs, state, created_at, phase)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'null')",
        )
        .and_then(|mut s| {
            s.execute(params![
                key,
                record.flow.name,
                flow,
                inputs,
                record.state.as_str(),
                record.created_at
            ])
        })
        .map_err(classify)?;
    if inserted == 0 {
        return Err(Error::Exists(record.id));
    }
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO steps (plan_id, idx, name, state, attempt) VALUES (?1, ?2, ?3, ?4, 0)",
        )
        .map_err(classify)?;
    for s in &steps {
        stmt.execute(params![key, s.index, s.name, s.state.as_str()])
            .map_err(classify)?;
    }
    Ok(())
}

fn change(conn: &Connection, c: &Change) -> Result<()> {
    match c {
        Change::Plan { plan, from, to, at } => {
            let n = conn
                .prepare_cached(
                    "UPDATE plans SET state = ?3,
                        started_at = CASE WHEN ?3 = 'running' THEN coalesce(started_at, ?4) ELSE started_at END,
                        ended_at = CASE WHEN ?3 = 'stopped' THEN ?4 ELSE ended_at END
                     WHERE id = ?1 AND state = ?2",
                )
                .and_then(|mut s| s.execute(params![plan.to_string(), from.as_str(), to.as_str(), at]))
                .map_err(classify)?;
            if n == 0 {
                return Err(conflict(conn, *plan, None, from.as_str()));
            }
        }
        Change::Step {
            plan,
            from,
            step,
            at: _,
        } => {
            let output = step.output.as_ref().map(to_json).transpose()?;
            let failure = step.failure.as_ref().map(to_json).transpose()?;
            let n = conn
                .prepare_cached(
                    "UPDATE steps SET state = ?4, attempt = ?5, started_at = ?6, ended_at = ?7,
                        output = ?8, failure = ?9
                     WHERE plan_id = ?1 AND idx = ?2 AND state = ?3",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        plan.to_string(),
                        step.index,
                        from.as_str(),
                        step.state.as_str(),
                        step.attempt,
                        step.started_at,
                        step.ended_at,
                        output,
                        failure
                    ])
                })
                .map_err(classify)?;
            if n == 0 {
                return Err(conflict(conn, *plan, Some(step.index), from.as_str()));
            }
        }
        Change::Phase { plan, phase } => {
            let phase = to_json(phase)?;
            conn.prepare_cached("UPDATE plans SET phase = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![plan.to_string(), phase]))
                .map_err(classify)?;
        }
    }
    if let Some(h) = c.transition() {
        let data = h.data_json();
        conn.prepare_cached(
            "INSERT INTO events (plan_id, step, from_state, to_state, at, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| s.execute(params![c.plan().to_string(), h.step, h.from, h.to, h.at, data]))
        .map_err(classify)?;
    }
    Ok(())
}

fn conflict(conn: &Connection, plan: PlanId, step: Option<u32>, expected: &str) -> Error {
    let key = plan.to_string();
    let found: Option<String> = match step {
        None => conn.query_row("SELECT state FROM plans WHERE id = ?1", [&key], |r| {
            r.get(0)
        }),
        Some(i) => conn.query_row(
            "SELECT state FROM steps WHERE plan_id = ?1 AND idx = ?2",
            params![key, i],
            |r| r.get(0),
        ),
    }
    .optional()
    .unwrap_or(None);
    match found {
        Some(found) => Error::Conflict {
            plan,
            step,
            expected: expected.to_string(),
            found,
        },
        None => Error::NotFound(match step {
            None => key,
            Some(i) => format!("{key} step {i}"),
        }),
    }
}
