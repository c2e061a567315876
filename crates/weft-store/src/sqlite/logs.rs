//! Tasks' output on SQLite: chunks appended and dropped by the writer, read in write order.

use super::classify;
use crate::{LogChunk, LogKey, LogQuery, LogRow, LogWrite, Result};
use rusqlite::{params, Connection};

pub(super) fn write(conn: &Connection, w: &LogWrite) -> Result<()> {
    if !w.drop.is_empty() {
        let mut stmt = conn
            .prepare_cached(
                "DELETE FROM step_logs WHERE plan_id = ?1 AND step = ?2 AND attempt = ?3
                 AND task = ?4 AND action = ?5 AND stream = ?6 AND pos = ?7",
            )
            .map_err(classify)?;
        for (k, offset) in &w.drop {
            stmt.execute(params![
                k.plan.to_string(),
                k.step,
                k.attempt,
                k.task,
                k.action,
                k.stream,
                *offset as i64
            ])
            .map_err(classify)?;
        }
    }
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO step_logs (plan_id, step, attempt, task, action, stream, pos, at, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(classify)?;
    for c in &w.append {
        let k = &c.key;
        stmt.execute(params![
            k.plan.to_string(),
            k.step,
            k.attempt,
            k.task,
            k.action,
            k.stream,
            c.offset as i64,
            c.at,
            c.data
        ])
        .map_err(classify)?;
    }
    Ok(())
}

pub(super) fn read(conn: &Connection, q: &LogQuery) -> Result<Vec<LogRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, step, attempt, task, action, stream, pos, at, data FROM step_logs
             WHERE plan_id = ?1 AND id > ?2 AND (?3 IS NULL OR step = ?3)
               AND (?4 IS NULL OR attempt = ?4) AND (?5 IS NULL OR stream = ?5)
             ORDER BY id LIMIT ?6",
        )
        .map_err(classify)?;
    let limit = if q.limit == 0 {
        i64::MAX
    } else {
        i64::from(q.limit)
    };
    let rows = stmt
        .query_map(
            params![
                q.plan.to_string(),
                q.after,
                q.step,
                q.attempt,
                q.stream,
                limit
            ],
            |r| {
                Ok(LogRow {
                    id: r.get(0)?,
                    chunk: LogChunk {
                        key: LogKey {
                            plan: q.plan,
                            step: r.get(1)?,
                            attempt: r.get(2)?,
                            task: r.get(3)?,
                            action: r.get(4)?,
                            stream: r.get(5)?,
                        },
                        offset: r.get::<_, i64>(6)?.max(0) as u64,
                        at: r.get(7)?,
                        data: r.get(8)?,
                    },
                })
            },
        )
        .map_err(classify)?;
    rows.map(|r| r.map_err(classify)).collect()
}
