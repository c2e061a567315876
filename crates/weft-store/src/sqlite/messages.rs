//! Remote workers' messages and registrations on SQLite: the writer's writes and the reads.

use super::classify;
use crate::codec::{json, to_json};
use crate::{Error, Result, WireMessage, WorkerRecord};
use rusqlite::{params, Connection};
use weft_model::now_millis;

pub(super) fn send(conn: &Connection, messages: &[WireMessage]) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO worker_messages
                (topic, kind, correlation_id, reply_to, attempt, plan_id, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(classify)?;
    let at = now_millis();
    for m in messages {
        stmt.execute(params![
            m.topic,
            m.kind,
            m.correlation_id,
            m.reply_to,
            m.attempt,
            m.plan,
            m.body,
            at
        ])
        .map_err(classify)?;
    }
    Ok(())
}

pub(super) fn take(conn: &Connection, topic: &str, limit: u32) -> Result<Vec<WireMessage>> {
    let mut stmt = conn
        .prepare_cached(
            "DELETE FROM worker_messages WHERE id IN
                (SELECT id FROM worker_messages WHERE topic = ?1 ORDER BY id LIMIT ?2)
             RETURNING id, topic, kind, correlation_id, reply_to, attempt, plan_id, body",
        )
        .map_err(classify)?;
    let mut rows: Vec<(i64, WireMessage)> = stmt
        .query_map(params![topic, limit], |r| {
            Ok((
                r.get(0)?,
                WireMessage {
                    topic: r.get(1)?,
                    kind: r.get(2)?,
                    correlation_id: r.get(3)?,
                    reply_to: r.get(4)?,
                    attempt: r.get(5)?,
                    plan: r.get(6)?,
                    body: r.get(7)?,
                },
            ))
        })
        .map_err(classify)?
        .collect::<std::result::Result<_, _>>()
        .map_err(classify)?;
    // RETURNING gives no order: oldest first.
    rows.sort_by_key(|(id, _)| *id);
    Ok(rows.into_iter().map(|(_, m)| m).collect())
}

pub(super) fn register(conn: &Connection, w: &WorkerRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO workers (topic, tasks, started_at, heartbeat_at, process, running, lease_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (topic) DO UPDATE SET tasks = excluded.tasks,
            started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
            process = excluded.process, running = excluded.running,
            lease_ms = excluded.lease_ms",
        params![
            w.topic,
            to_json(&w.tasks)?,
            w.started_at,
            now_millis(),
            w.process,
            w.running,
            w.lease_ms
        ],
    )
    .map_err(classify)?;
    Ok(())
}

pub(super) fn heartbeat(conn: &Connection, topic: &str, running: u32) -> Result<()> {
    let n = conn
        .execute(
            "UPDATE workers SET heartbeat_at = ?2, running = ?3 WHERE topic = ?1",
            params![topic, now_millis(), running],
        )
        .map_err(classify)?;
    if n == 0 {
        return Err(Error::NotFound(format!("worker {topic}")));
    }
    Ok(())
}

pub(super) fn remove(conn: &Connection, topic: &str) -> Result<()> {
    conn.execute("DELETE FROM workers WHERE topic = ?1", [topic])
        .map_err(classify)?;
    Ok(())
}

pub(super) fn all(conn: &Connection) -> Result<Vec<WorkerRecord>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT topic, tasks, started_at, heartbeat_at, process, running, lease_ms FROM workers
             ORDER BY topic",
        )
        .map_err(classify)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .map_err(classify)?;
    rows.map(|r| {
        let (topic, tasks, started_at, heartbeat_at, process, running, lease_ms) =
            r.map_err(classify)?;
        Ok(WorkerRecord {
            topic,
            tasks: json(&tasks, "worker tasks")?,
            started_at,
            heartbeat_at,
            process,
            running,
            lease_ms,
        })
    })
    .collect()
}
