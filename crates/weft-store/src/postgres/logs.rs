//! Tasks' output on PostgreSQL: chunks appended and dropped by the writer, read in write
//! order.

use super::Conn;
use crate::{LogChunk, LogKey, LogQuery, LogRow, LogWrite, Result};

pub(super) async fn write(conn: &mut Conn, w: &LogWrite) -> Result<()> {
    if !w.drop.is_empty() {
        let plans: Vec<String> = w.drop.iter().map(|(k, _)| k.plan.to_string()).collect();
        let steps: Vec<i32> = w.drop.iter().map(|(k, _)| k.step as i32).collect();
        let attempts: Vec<i32> = w.drop.iter().map(|(k, _)| k.attempt as i32).collect();
        let tasks: Vec<&str> = w.drop.iter().map(|(k, _)| k.task.as_str()).collect();
        let actions: Vec<&str> = w.drop.iter().map(|(k, _)| k.action.as_str()).collect();
        let streams: Vec<&str> = w.drop.iter().map(|(k, _)| k.stream.as_str()).collect();
        let offsets: Vec<i64> = w.drop.iter().map(|(_, o)| *o as i64).collect();
        conn.execute(
            "DELETE FROM step_logs l USING unnest($1::text[], $2::int4[], $3::int4[], $4::text[],
                 $5::text[], $6::text[], $7::int8[]) AS d(p, s, a, t, x, m, o)
             WHERE l.plan_id = d.p AND l.step = d.s AND l.attempt = d.a AND l.task = d.t
               AND l.action = d.x AND l.stream = d.m AND l.pos = d.o",
            &[
                &plans, &steps, &attempts, &tasks, &actions, &streams, &offsets,
            ],
        )
        .await?;
    }
    if !w.append.is_empty() {
        let a = &w.append;
        let plans: Vec<String> = a.iter().map(|c| c.key.plan.to_string()).collect();
        let steps: Vec<i32> = a.iter().map(|c| c.key.step as i32).collect();
        let attempts: Vec<i32> = a.iter().map(|c| c.key.attempt as i32).collect();
        let tasks: Vec<&str> = a.iter().map(|c| c.key.task.as_str()).collect();
        let actions: Vec<&str> = a.iter().map(|c| c.key.action.as_str()).collect();
        let streams: Vec<&str> = a.iter().map(|c| c.key.stream.as_str()).collect();
        let offsets: Vec<i64> = a.iter().map(|c| c.offset as i64).collect();
        let ats: Vec<i64> = a.iter().map(|c| c.at).collect();
        let data: Vec<&[u8]> = a.iter().map(|c| c.data.as_slice()).collect();
        conn.execute(
            "INSERT INTO step_logs (plan_id, step, attempt, task, action, stream, pos, at, data)
             SELECT p, s, a, t, x, m, o, w, d
             FROM unnest($1::text[], $2::int4[], $3::int4[], $4::text[], $5::text[], $6::text[],
                         $7::int8[], $8::int8[], $9::bytea[]) WITH ORDINALITY
                  AS c(p, s, a, t, x, m, o, w, d, n)
             ORDER BY n",
            &[
                &plans, &steps, &attempts, &tasks, &actions, &streams, &offsets, &ats, &data,
            ],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn read(conn: &mut Conn, q: &LogQuery) -> Result<Vec<LogRow>> {
    let limit = if q.limit == 0 {
        i64::MAX
    } else {
        i64::from(q.limit)
    };
    let step = q.step.map(|s| s as i32);
    let attempt = q.attempt.map(|a| a as i32);
    let rows = conn
        .query(
            "SELECT id, step, attempt, task, action, stream, pos, at, data FROM step_logs
             WHERE plan_id = $1 AND id > $2 AND ($3::int4 IS NULL OR step = $3)
               AND ($4::int4 IS NULL OR attempt = $4) AND ($5::text IS NULL OR stream = $5)
             ORDER BY id LIMIT $6",
            &[
                &q.plan.to_string(),
                &q.after,
                &step,
                &attempt,
                &q.stream,
                &limit,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LogRow {
            id: r.get(0),
            chunk: LogChunk {
                key: LogKey {
                    plan: q.plan,
                    step: r.get::<_, i32>(1).max(0) as u32,
                    attempt: r.get::<_, i32>(2).max(0) as u32,
                    task: r.get(3),
                    action: r.get(4),
                    stream: r.get(5),
                },
                offset: r.get::<_, i64>(6).max(0) as u64,
                at: r.get(7),
                data: r.get(8),
            },
        })
        .collect())
}
