//! Remote workers' messages and registrations on PostgreSQL: the writer's writes (takes with
//! `SKIP LOCKED`, so two takers of a topic get different messages; heartbeats on the
//! database's clock) and the reads.

use super::Conn;
use crate::{Error, Result, WireMessage, WorkerRecord};
use weft_model::now_millis;

/// Messages sent, in order, as one statement ([`send_params`]).
pub(super) const SEND: &str = "INSERT INTO worker_messages
        (topic, kind, correlation_id, reply_to, attempt, plan_id, body, created_at)
     SELECT t, k, c, r, a, p, b, $8
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::text[],
                 $7::text[]) WITH ORDINALITY AS m(t, k, c, r, a, p, b, n)
     ORDER BY n";

/// The parameters of [`SEND`] for `messages`.
pub(super) fn send_params(
    messages: &[&WireMessage],
) -> Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> {
    let owned = |f: &dyn Fn(&WireMessage) -> Option<String>| -> Vec<Option<String>> {
        messages.iter().map(|m| f(m)).collect()
    };
    let attempts: Vec<i32> = messages
        .iter()
        .map(|m| i32::try_from(m.attempt).unwrap_or(i32::MAX))
        .collect();
    vec![
        Box::new(owned(&|m| Some(m.topic.clone()))),
        Box::new(owned(&|m| Some(m.kind.clone()))),
        Box::new(owned(&|m| m.correlation_id.clone())),
        Box::new(owned(&|m| m.reply_to.clone())),
        Box::new(attempts),
        Box::new(owned(&|m| m.plan.clone())),
        Box::new(owned(&|m| Some(m.body.clone()))),
        Box::new(now_millis()),
    ]
}

pub(super) async fn send(conn: &mut Conn, messages: &[WireMessage]) -> Result<()> {
    let all: Vec<&WireMessage> = messages.iter().collect();
    let params = send_params(&all);
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|b| b.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    conn.execute(SEND, &refs).await?;
    Ok(())
}

pub(super) async fn take(conn: &mut Conn, topic: &str, limit: u32) -> Result<Vec<WireMessage>> {
    let rows = conn
        .query(
            "DELETE FROM worker_messages WHERE id IN
                (SELECT id FROM worker_messages WHERE topic = $1 ORDER BY id LIMIT $2
                 FOR UPDATE SKIP LOCKED)
             RETURNING id, topic, kind, correlation_id, reply_to, attempt, plan_id, body",
            &[&topic, &i64::from(limit)],
        )
        .await?;
    let mut out: Vec<(i64, WireMessage)> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                WireMessage {
                    topic: r.get(1),
                    kind: r.get(2),
                    correlation_id: r.get(3),
                    reply_to: r.get(4),
                    attempt: u32::try_from(r.get::<_, i32>(5)).unwrap_or(0),
                    plan: r.get(6),
                    body: r.get(7),
                },
            )
        })
        .collect();
    out.sort_by_key(|(id, _)| *id);
    Ok(out.into_iter().map(|(_, m)| m).collect())
}

pub(super) async fn register(conn: &mut Conn, w: &WorkerRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO workers (topic, tasks, started_at, heartbeat_at, process, running, lease_ms)
         VALUES ($1, $2, $3, (extract(epoch from clock_timestamp()) * 1000)::bigint, $4, $5, $6)
         ON CONFLICT (topic) DO UPDATE SET tasks = excluded.tasks,
            started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
            process = excluded.process, running = excluded.running,
            lease_ms = excluded.lease_ms",
        &[
            &w.topic,
            &w.tasks,
            &w.started_at,
            &w.process,
            &i32::try_from(w.running).unwrap_or(i32::MAX),
            &w.lease_ms,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn heartbeat(conn: &mut Conn, topic: &str, running: u32) -> Result<()> {
    let n = conn
        .execute(
            "UPDATE workers SET heartbeat_at = (extract(epoch from clock_timestamp()) * 1000)::bigint,
                running = $2
             WHERE topic = $1",
            &[&topic, &i32::try_from(running).unwrap_or(i32::MAX)],
        )
        .await?;
    if n == 0 {
        return Err(Error::NotFound(format!("worker {topic}")));
    }
    Ok(())
}

pub(super) async fn remove(conn: &mut Conn, topic: &str) -> Result<()> {
    conn.execute("DELETE FROM workers WHERE topic = $1", &[&topic])
        .await?;
    Ok(())
}

pub(super) async fn all(conn: &mut Conn) -> Result<Vec<WorkerRecord>> {
    let rows = conn
        .query(
            "SELECT topic, tasks, started_at, heartbeat_at, process, running, lease_ms FROM workers
             ORDER BY topic",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| WorkerRecord {
            topic: r.get(0),
            tasks: r.get(1),
            started_at: r.get(2),
            heartbeat_at: r.get(3),
            process: r.get(4),
            running: u32::try_from(r.get::<_, i32>(5)).unwrap_or(0),
            lease_ms: r.get(6),
        })
        .collect())
}
