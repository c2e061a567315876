//! The writer task: the only owner of the write connection, and the group commit.
//!
//! It takes every request queued, opens one transaction, gives each request a savepoint,
//! pipelines that request's statements (sent together, answered in order), and commits once.
//! A fenced change that finds another state rolls back to its request's savepoint only.

use super::{classify, parse_id, Conn};
use crate::{Change, Command, Due, Error, NewPlan, NodeRecord, Reply, Result};
use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::Config;
use weft_model::plan::{self, Outcome};
use weft_model::{now_millis, step, Millis, PlanId};

/// The most requests one transaction takes.
const MAX_BATCH: usize = 4096;

/// A write and where to send its result.
pub(super) struct Request {
    pub write: Write,
    pub reply: oneshot::Sender<Result<Output>>,
}

/// What to write.
pub(super) enum Write {
    Create(Box<NewPlan>),
    Apply(String, Vec<Change>),
    Acquire(PlanId, String),
    Release(PlanId, Option<String>),
    Inhibit(PlanId),
    RegisterNode(NodeRecord),
    Heartbeat(String, Millis),
    InvalidateNode(String),
    ReleaseLocks(String),
    NodeReport(String, String),
    Claim(String, u32),
    PromoteDue(String, Millis),
    Post(PlanId, Command),
    Reply(i64, Reply),
}

/// What a write returns.
pub(super) enum Output {
    Unit,
    Plans(Vec<PlanId>),
    Due(Vec<Due>),
    Id(i64),
    Bool(bool),
}

/// Serves requests until every sender is gone, reconnecting when the connection breaks.
pub(super) async fn run(
    config: Config,
    shown: String,
    mut conn: Option<Conn>,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            conn = match Conn::connect(&config, &shown).await {
                Ok(c) => Some(c),
                Err(e) => {
                    for req in batch {
                        let _ = req.reply.send(Err(e.clone()));
                    }
                    continue;
                }
            };
        }
        let Some(c) = conn.as_mut() else { continue };
        let results = commit(c, &batch).await;
        if results
            .iter()
            .any(|r| matches!(r, Err(Error::Unavailable(_))))
        {
            conn = None;
        }
        for (req, result) in batch.into_iter().zip(results) {
            let _ = req.reply.send(result);
        }
    }
}

/// Applies every request in one transaction; returns each one's result.
async fn commit(conn: &mut Conn, batch: &[Request]) -> Vec<Result<Output>> {
    if batch.iter().all(|r| matches!(r.write, Write::Apply(..))) {
        match pipelined(conn, batch).await {
            Ok(()) => return batch.iter().map(|_| Ok(Output::Unit)).collect(),
            // A conflict or an error somewhere: rolled back; sort out whose, one by one.
            Err(Error::Unavailable(m)) => {
                return batch
                    .iter()
                    .map(|_| Err(Error::Unavailable(m.clone())))
                    .collect()
            }
            Err(_) => {}
        }
    }
    one_by_one(conn, batch).await
}

/// The fast path for changes (nearly every write): the whole transaction — BEGIN and every
/// statement of every request — is sent at once and answered in order, then committed. Any
/// conflict or error rolls it all back, for [`one_by_one`] to redo.
async fn pipelined(conn: &mut Conn, batch: &[Request]) -> Result<()> {
    let mut prepared = Vec::new();
    for req in batch {
        if let Write::Apply(by, changes) = &req.write {
            for c in changes {
                let (sql, params, fenced) = change_sql(by, c)?;
                prepared.push((conn.prepare(sql).await?, params, fenced));
            }
        }
    }
    let (begun, counts) = {
        let client = &conn.client;
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = prepared
            .iter()
            .map(|(_, params, _)| {
                params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        let begin = client.batch_execute("BEGIN");
        let statements = join_all(
            prepared
                .iter()
                .zip(&refs)
                .map(|((stmt, _, _), params)| client.execute(stmt, params)),
        );
        tokio::join!(begin, statements)
    };
    let mut failed = begun.map_err(classify).err();
    for (count, (_, _, fenced)) in counts.into_iter().zip(&prepared) {
        match count {
            Ok(0) if *fenced => failed = failed.or(Some(Error::Backend("conflict".into()))),
            Ok(_) => {}
            Err(e) => failed = failed.or(Some(classify(e))),
        }
    }
    if let Some(e) = failed {
        let _ = conn.client.batch_execute("ROLLBACK").await;
        return Err(e);
    }
    conn.client.batch_execute("COMMIT").await.map_err(classify)
}

/// Every request in its own savepoint, so that one caller's conflict fails only its own.
async fn one_by_one(conn: &mut Conn, batch: &[Request]) -> Vec<Result<Output>> {
    let all_fail = |e: Error| batch.iter().map(|_| Err(e.clone())).collect();
    if let Err(e) = conn.client.batch_execute("BEGIN").await.map_err(classify) {
        return all_fail(e);
    }
    let mut results = Vec::with_capacity(batch.len());
    let mut notify = Notify::default();
    for req in batch {
        if let Err(e) = conn
            .client
            .batch_execute("SAVEPOINT w")
            .await
            .map_err(classify)
        {
            let _ = conn.client.batch_execute("ROLLBACK").await;
            return all_fail(e);
        }
        let mut wants = Notify::default();
        let outcome = apply(conn, &req.write, &mut wants).await;
        let end = if outcome.is_ok() {
            notify.merge(wants);
            "RELEASE w"
        } else {
            "ROLLBACK TO w; RELEASE w"
        };
        if let Err(e) = conn.client.batch_execute(end).await.map_err(classify) {
            let _ = conn.client.batch_execute("ROLLBACK").await;
            return all_fail(e);
        }
        results.push(outcome);
    }
    for payload in notify.payloads() {
        if let Err(e) = conn
            .execute("SELECT pg_notify('weft', $1)", &[&payload])
            .await
        {
            let _ = conn.client.batch_execute("ROLLBACK").await;
            return all_fail(e);
        }
    }
    if let Err(e) = conn.client.batch_execute("COMMIT").await.map_err(classify) {
        return all_fail(e);
    }
    results
}

/// Which wake-ups a transaction sends when it commits.
#[derive(Default, Clone, Copy)]
struct Notify {
    plans: bool,
    mailbox: bool,
}

impl Notify {
    fn merge(&mut self, other: Notify) {
        self.plans |= other.plans;
        self.mailbox |= other.mailbox;
    }

    fn payloads(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.plans {
            out.push("plans");
        }
        if self.mailbox {
            out.push("mailbox");
        }
        out
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

fn i32_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Backend(format!("cannot serialize: {e}")))
}

const CHANGE_PLAN: &str = "WITH u AS (
        UPDATE plans SET state = $3,
            started_at = CASE WHEN $3 = 'running' THEN coalesce(started_at, $4) ELSE started_at END,
            ended_at = CASE WHEN $3 = 'stopped' THEN $4 ELSE ended_at END
        WHERE id = $1 AND state = $2 RETURNING id)
    INSERT INTO events (plan_id, step, from_state, to_state, at, data, actor)
    SELECT id, NULL, $2, $3, $4, $5, $6 FROM u";

const CHANGE_STEP: &str = "WITH u AS (
        UPDATE steps SET state = $4, attempt = $5, started_at = $6, ended_at = $7, output = $8,
            failure = $9, deadline = $10, warning = $11, group_progress = $12
        WHERE plan_id = $1 AND idx = $2 AND state = $3 RETURNING plan_id)
    INSERT INTO events (plan_id, step, from_state, to_state, at, data, actor)
    SELECT plan_id, $2, $3, $4, $13, $14, $15 FROM u";

const CHANGE_GROUP: &str = "UPDATE steps SET group_progress = $4
    WHERE plan_id = $1 AND idx = $2 AND attempt = $3 AND state = 'running'";

const CHANGE_PHASE: &str = "UPDATE plans SET phase = $2 WHERE id = $1";

/// The statement and parameters of one change; it touches one row when it lands.
fn change_sql(by: &str, c: &Change) -> Result<(&'static str, Vec<Param>, bool)> {
    Ok(match c {
        Change::Plan {
            plan, from, to, at, ..
        } => {
            let data = c.transition().and_then(|t| t.data_json());
            (
                CHANGE_PLAN,
                vec![
                    Box::new(plan.to_string()),
                    Box::new(from.as_str()),
                    Box::new(to.as_str()),
                    Box::new(*at),
                    Box::new(data),
                    Box::new(by.to_string()),
                ],
                true,
            )
        }
        Change::Step {
            plan,
            from,
            step,
            at,
        } => {
            let data = c.transition().and_then(|t| t.data_json());
            (
                CHANGE_STEP,
                vec![
                    Box::new(plan.to_string()),
                    Box::new(i32_of(step.index)),
                    Box::new(from.as_str()),
                    Box::new(step.state.as_str()),
                    Box::new(i32_of(step.attempt)),
                    Box::new(step.started_at),
                    Box::new(step.ended_at),
                    Box::new(step.output.as_ref().map(to_json).transpose()?),
                    Box::new(step.failure.as_ref().map(to_json).transpose()?),
                    Box::new(step.deadline),
                    Box::new(step.warning.clone()),
                    Box::new(step.group.as_ref().map(to_json).transpose()?),
                    Box::new(*at),
                    Box::new(data),
                    Box::new(by.to_string()),
                ],
                true,
            )
        }
        Change::Group {
            plan,
            step,
            attempt,
            progress,
        } => (
            CHANGE_GROUP,
            vec![
                Box::new(plan.to_string()),
                Box::new(i32_of(*step)),
                Box::new(i32_of(*attempt)),
                Box::new(to_json(progress)?),
            ],
            true,
        ),
        Change::Phase { plan, phase } => (
            CHANGE_PHASE,
            vec![Box::new(plan.to_string()), Box::new(to_json(phase)?)],
            false,
        ),
    })
}

/// Applies changes with their statements pipelined; the first that finds another state than
/// it expects is reported (the caller rolls the request back).
async fn apply_changes(conn: &mut Conn, by: &str, changes: &[Change]) -> Result<()> {
    let mut prepared = Vec::with_capacity(changes.len());
    for c in changes {
        let (sql, params, fenced) = change_sql(by, c)?;
        prepared.push((conn.prepare(sql).await?, params, fenced));
    }
    let counts = {
        let client = &conn.client;
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = prepared
            .iter()
            .map(|(_, params, _)| {
                params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        join_all(
            prepared
                .iter()
                .zip(&refs)
                .map(|((stmt, _, _), params)| client.execute(stmt, params)),
        )
        .await
    };
    for ((c, count), (_, _, fenced)) in changes.iter().zip(counts).zip(&prepared) {
        let count = count.map_err(classify)?;
        if *fenced && count == 0 {
            return Err(conflict(conn, c).await);
        }
    }
    Ok(())
}

/// What a fenced change that did not land found instead.
async fn conflict(conn: &mut Conn, c: &Change) -> Error {
    let plan = c.plan();
    let key = plan.to_string();
    let (step, expected) = match c {
        Change::Plan { from, .. } => (None, from.as_str().to_string()),
        Change::Step { step, from, .. } => (Some(step.index), from.as_str().to_string()),
        Change::Group { step, attempt, .. } => {
            (Some(*step), format!("running (attempt {attempt})"))
        }
        Change::Phase { .. } => (None, String::new()),
    };
    let found = match step {
        None => conn
            .query_opt("SELECT state FROM plans WHERE id = $1", &[&key])
            .await
            .map(|r| r.map(|r| r.get::<_, String>(0))),
        Some(i) => conn
            .query_opt(
                "SELECT state, attempt FROM steps WHERE plan_id = $1 AND idx = $2",
                &[&key, &i32_of(i)],
            )
            .await
            .map(|r| {
                r.map(|r| match c {
                    Change::Group { .. } => {
                        format!("{} (attempt {})", r.get::<_, String>(0), r.get::<_, i32>(1))
                    }
                    _ => r.get::<_, String>(0),
                })
            }),
    };
    match found {
        Ok(Some(found)) => Error::Conflict {
            plan,
            step,
            expected,
            found,
        },
        Ok(None) => Error::NotFound(match step {
            None => key,
            Some(i) => format!("{key} step {i}"),
        }),
        Err(e) => e,
    }
}

async fn plan_exists(conn: &mut Conn, key: &str) -> Result<bool> {
    Ok(conn
        .query_opt("SELECT 1 FROM plans WHERE id = $1", &[&key])
        .await?
        .is_some())
}

fn ids(rows: Vec<tokio_postgres::Row>) -> Result<Vec<PlanId>> {
    rows.iter().map(|r| parse_id(r.get(0))).collect()
}

async fn apply(conn: &mut Conn, write: &Write, notify: &mut Notify) -> Result<Output> {
    match write {
        Write::Create(plan) => {
            create(conn, plan).await?;
            notify.plans |= plan.state == plan::State::Planned && plan.owner.is_none();
            Ok(Output::Unit)
        }
        Write::Apply(by, changes) => {
            apply_changes(conn, by, changes).await?;
            Ok(Output::Unit)
        }
        Write::Inhibit(plan) => {
            let key = plan.to_string();
            if !plan_exists(conn, &key).await? {
                return Err(Error::NotFound(key));
            }
            conn.execute(
                "INSERT INTO inhibitions (plan_id, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, &now_millis()],
            )
            .await?;
            Ok(Output::Unit)
        }
        Write::RegisterNode(n) => {
            // The heartbeat is the database's time: leases are judged by one clock.
            conn.execute(
                "INSERT INTO nodes (id, name, started_at, heartbeat_at)
                 VALUES ($1, $2, $3, (extract(epoch from clock_timestamp()) * 1000)::bigint)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                &[&n.id, &n.name, &n.started_at],
            )
            .await?;
            Ok(Output::Unit)
        }
        Write::Heartbeat(node, _at) => {
            let n = conn
                .execute(
                    "UPDATE nodes SET heartbeat_at = (extract(epoch from clock_timestamp()) * 1000)::bigint
                     WHERE id = $1",
                    &[node],
                )
                .await?;
            if n == 0 {
                return Err(Error::NotFound(format!("node {node}")));
            }
            Ok(Output::Unit)
        }
        Write::InvalidateNode(node) => {
            conn.execute("DELETE FROM nodes WHERE id = $1", &[node])
                .await?;
            let rows = conn
                .query(
                    "DELETE FROM locks WHERE owner = $1 RETURNING plan_id",
                    &[node],
                )
                .await?;
            notify.plans |= !rows.is_empty();
            Ok(Output::Plans(ids(rows)?))
        }
        Write::ReleaseLocks(owner) => {
            let rows = conn
                .query(
                    "DELETE FROM locks WHERE owner = $1 RETURNING plan_id",
                    &[owner],
                )
                .await?;
            notify.plans |= !rows.is_empty();
            Ok(Output::Plans(ids(rows)?))
        }
        Write::NodeReport(node, report) => {
            let n = conn
                .execute(
                    "UPDATE nodes SET report = $2 WHERE id = $1",
                    &[node, report],
                )
                .await?;
            if n == 0 {
                return Err(Error::NotFound(format!("node {node}")));
            }
            Ok(Output::Unit)
        }
        Write::Claim(owner, limit) => {
            let rows = conn
                .query(
                    "WITH c AS (
                        SELECT p.id FROM plans p
                        WHERE p.state IN ('planned', 'running')
                          AND NOT EXISTS (SELECT 1 FROM locks l WHERE l.plan_id = p.id)
                          AND NOT EXISTS (SELECT 1 FROM inhibitions i WHERE i.plan_id = p.id)
                        ORDER BY p.id
                        LIMIT $3
                        FOR UPDATE SKIP LOCKED)
                     INSERT INTO locks (plan_id, owner, acquired_at)
                     SELECT id, $1, $2 FROM c
                     ON CONFLICT (plan_id) DO NOTHING
                     RETURNING plan_id",
                    &[owner, &now_millis(), &i64::from(*limit)],
                )
                .await?;
            Ok(Output::Plans(ids(rows)?))
        }
        Write::PromoteDue(by, now) => {
            let due = promote_due(conn, by, *now).await?;
            notify.plans |= due.iter().any(|d| matches!(d, Due::Ready(_)));
            Ok(Output::Due(due))
        }
        Write::Post(plan, command) => {
            let key = plan.to_string();
            if !plan_exists(conn, &key).await? {
                return Err(Error::NotFound(key));
            }
            let command = to_json(command)?;
            let row = conn
                .query_opt(
                    "INSERT INTO mailbox (plan_id, command, created_at) VALUES ($1, $2, $3) RETURNING id",
                    &[&key, &command, &now_millis()],
                )
                .await?
                .ok_or_else(|| Error::Backend("the insert returned no id".into()))?;
            notify.mailbox = true;
            Ok(Output::Id(row.get(0)))
        }
        Write::Reply(id, reply) => {
            let (status, reason) = match reply {
                Reply::Pending => ("pending", None),
                Reply::Done => ("done", None),
                Reply::Refused(why) => ("refused", Some(why.as_str())),
            };
            let n = conn
                .execute(
                    "UPDATE mailbox SET status = $2, reason = $3 WHERE id = $1 AND status = 'pending'",
                    &[id, &status, &reason],
                )
                .await?;
            Ok(Output::Bool(n == 1))
        }
        Write::Acquire(plan, owner) => {
            let key = plan.to_string();
            if !plan_exists(conn, &key).await? {
                return Err(Error::NotFound(key));
            }
            conn.execute(
                "INSERT INTO locks (plan_id, owner, acquired_at) VALUES ($1, $2, $3)
                 ON CONFLICT (plan_id) DO NOTHING",
                &[&key, owner, &now_millis()],
            )
            .await?;
            let holder: String = conn
                .query_opt("SELECT owner FROM locks WHERE plan_id = $1", &[&key])
                .await?
                .map(|r| r.get(0))
                .unwrap_or_default();
            if holder == *owner {
                Ok(Output::Unit)
            } else {
                Err(Error::Locked {
                    plan: *plan,
                    owner: holder,
                })
            }
        }
        Write::Release(plan, owner) => {
            let n = conn
                .execute(
                    "DELETE FROM locks WHERE plan_id = $1 AND ($2::text IS NULL OR owner = $2)",
                    &[&plan.to_string(), owner],
                )
                .await?;
            notify.plans |= n > 0;
            Ok(Output::Unit)
        }
    }
}

/// Moves due scheduled plans to `planned`. Rows another node is promoting right now are
/// skipped (`SKIP LOCKED`), so each plan is promoted once across the cluster.
async fn promote_due(conn: &mut Conn, by: &str, now: Millis) -> Result<Vec<Due>> {
    let rows = conn
        .query(
            "SELECT id, after_plans FROM plans
             WHERE state = 'scheduled' AND (start_at IS NULL OR start_at <= $1)
             ORDER BY id
             FOR UPDATE SKIP LOCKED",
            &[&now],
        )
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let plan = parse_id(r.get(0))?;
        let after: Vec<PlanId> = serde_json::from_str(r.get::<_, &str>(1))
            .map_err(|e| Error::Corrupt(format!("stored prerequisites of {plan}: {e}")))?;
        let mut all_stopped = true;
        let mut failed = None;
        for p in &after {
            match prerequisite(conn, *p).await? {
                Some((plan::State::Stopped, Outcome::Error)) => failed = failed.or(Some(*p)),
                Some((plan::State::Stopped, _)) => {}
                Some(_) => all_stopped = false,
                None => failed = failed.or(Some(*p)),
            }
        }
        if let Some(prerequisite) = failed {
            out.push(Due::FailedDependency { plan, prerequisite });
        } else if all_stopped {
            apply_changes(
                conn,
                by,
                &[
                    Change::plan_state(plan, plan::State::Scheduled, plan::State::Planning, now),
                    Change::plan_state(plan, plan::State::Planning, plan::State::Planned, now),
                ],
            )
            .await?;
            out.push(Due::Ready(plan));
        }
    }
    Ok(out)
}

async fn prerequisite(conn: &mut Conn, plan: PlanId) -> Result<Option<(plan::State, Outcome)>> {
    let key = plan.to_string();
    let Some(row) = conn
        .query_opt("SELECT state FROM plans WHERE id = $1", &[&key])
        .await?
    else {
        return Ok(None);
    };
    let state: plan::State = row.get::<_, &str>(0).parse().map_err(Error::Corrupt)?;
    let rows = conn
        .query(
            "SELECT state, warning IS NOT NULL FROM steps WHERE plan_id = $1",
            &[&key],
        )
        .await?;
    let steps = rows
        .iter()
        .map(|r| {
            r.get::<_, &str>(0)
                .parse::<step::State>()
                .map(|s| (s, r.get::<_, bool>(1)))
                .map_err(Error::Corrupt)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((state, Outcome::derive(steps))))
}

async fn create(conn: &mut Conn, plan: &NewPlan) -> Result<()> {
    let (record, steps) = plan.records();
    let key = record.id.to_string();
    let flow = to_json(&record.flow)?;
    let inputs = to_json(&record.inputs)?;
    let after = to_json(&record.after)?;
    let inserted = conn
        .execute(
            "INSERT INTO plans (id, flow_name, flow, inputs, state, created_at, phase, start_at, after_plans)
             VALUES ($1, $2, $3, $4, $5, $6, 'null', $7, $8)
             ON CONFLICT (id) DO NOTHING",
            &[
                &key,
                &record.flow.name,
                &flow,
                &inputs,
                &record.state.as_str(),
                &record.created_at,
                &record.start_at,
                &after,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(Error::Exists(record.id));
    }
    let indices: Vec<i32> = steps.iter().map(|s| i32_of(s.index)).collect();
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    let states: Vec<&str> = steps.iter().map(|s| s.state.as_str()).collect();
    conn.execute(
        "INSERT INTO steps (plan_id, idx, name, state, attempt)
         SELECT $1, i, n, s, 0 FROM unnest($2::int[], $3::text[], $4::text[]) AS t(i, n, s)",
        &[&key, &indices, &names, &states],
    )
    .await?;
    if let Some(owner) = &plan.owner {
        conn.execute(
            "INSERT INTO locks (plan_id, owner, acquired_at) VALUES ($1, $2, $3)",
            &[&key, owner, &record.created_at],
        )
        .await?;
    }
    Ok(())
}
