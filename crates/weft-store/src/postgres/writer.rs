//! The writer task: the only owner of the write connection, and the group commit.
//!
//! It takes every request queued, opens one transaction, gives each request a savepoint,
//! pipelines that request's statements (sent together, answered in order), and commits once.
//! A fenced change that finds another state rolls back to its request's savepoint only.

use super::Target;
use super::{classify, jobs, logs, messages, parse_id, Conn};
use crate::codec::{to_json, MAX_BATCH};
pub(super) use crate::queue::{Output, Request, Write};
use crate::record::{judge_prerequisites, promotion, Readiness};
use crate::{Change, Due, Error, NewPlan, Reply, Result, WireMessage};
use futures_util::future::join_all;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use weft_model::plan::{self, Outcome};
use weft_model::{now_millis, step, Millis, PlanId};

/// Serves requests until every sender is gone, reconnecting when the connection breaks.
pub(super) async fn run(
    config: Target,
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
        // Slot requests go last, together (see `commit`).
        let (mut batch, asks): (Vec<Request>, Vec<Request>) = batch
            .into_iter()
            .partition(|r| !matches!(r.write, Write::AcquireSlots(_)));
        batch.extend(asks);
        let started = std::time::Instant::now();
        let results = commit(c, &batch).await;
        crate::metrics::committed(batch.len(), started.elapsed());
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
///
/// Requests are taken in order, in runs: a run of requests that need no answer but a row count
/// (changes, new plans, released locks, heartbeats) is sent at once behind a savepoint and
/// answered in order; a conflict or error in it rolls the run back for [`one_by_one`] to redo.
/// Other requests (claims, messages, …) go one by one, each in its own savepoint.
async fn commit(conn: &mut Conn, batch: &[Request]) -> Vec<Result<Output>> {
    let all_fail = |e: Error| batch.iter().map(|_| Err(e.clone())).collect();
    // A transaction that only takes messages need not wait for its WAL flush: lost in a
    // crash of the database, its messages are simply there again for the next take (the
    // protocol tolerates a request or response delivered twice: attempts fence them).
    let begin = if batch
        .iter()
        .all(|r| matches!(r.write, Write::TakeMessages(..)))
    {
        "BEGIN; SET LOCAL synchronous_commit TO off"
    } else {
        "BEGIN"
    };
    if let Err(e) = conn.client.batch_execute(begin).await.map_err(classify) {
        return all_fail(e);
    }
    let mut results: Vec<Result<Output>> = Vec::with_capacity(batch.len());
    let mut notify = Notify::default();
    let mut i = 0;
    while i < batch.len() {
        let run = batch[i..]
            .iter()
            .take_while(|r| pipelinable(&r.write))
            .count();
        let asks = batch[i..]
            .iter()
            .take_while(|r| matches!(r.write, Write::AcquireSlots(_)))
            .count();
        let keyed = batch[i..]
            .iter()
            .take_while(|r| matches!(r.write, Write::CreateOnce(..)))
            .count();
        let (segment, outcome) = if keyed > 1 {
            let segment = &batch[i..i + keyed];
            (segment, keyed_plans(conn, segment, &mut notify).await)
        } else if asks > 0 {
            let segment = &batch[i..i + asks];
            (segment, slot_requests(conn, segment, &mut notify).await)
        } else if run > 0 {
            let segment = &batch[i..i + run];
            match pipelined(conn, segment).await {
                Ok(wants) => {
                    notify.merge(wants);
                    (
                        segment,
                        Ok(segment.iter().map(|_| Ok(Output::Unit)).collect()),
                    )
                }
                Err(e @ Error::Unavailable(_)) => (segment, Err(e)),
                Err(_) => (segment, one_by_one(conn, segment, &mut notify).await),
            }
        } else {
            let segment = &batch[i..=i];
            (segment, one_by_one(conn, segment, &mut notify).await)
        };
        match outcome {
            Ok(r) => results.extend(r),
            Err(e) => {
                let _ = conn.client.batch_execute("ROLLBACK").await;
                return all_fail(e);
            }
        }
        i += segment.len();
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

/// Whether a write is only statements whose row counts say it all.
fn pipelinable(w: &Write) -> bool {
    matches!(
        w,
        Write::Apply(..)
            | Write::Create(..)
            | Write::Acquire(..)
            | Write::Release(..)
            | Write::Heartbeat(..)
            | Write::NodeReport(..)
            | Write::SendMessages(..)
    )
}

/// A statement of a pipelined run: its SQL, parameters, whether it must touch a row, and the
/// wake-up it sends if it touched any.
struct Planned {
    sql: &'static str,
    params: Vec<Param>,
    /// The rows it must touch (`None`: any number).
    expect: Option<u64>,
    wakes: Notify,
    /// For changes: the indices (in the changes given) of those it applies.
    covers: Vec<usize>,
}

fn planned(sql: &'static str, params: Vec<Param>, fenced: bool) -> Planned {
    Planned {
        sql,
        params,
        expect: fenced.then_some(1),
        wakes: Notify::default(),
        covers: Vec::new(),
    }
}

/// Every step and plan transition of a layer in one statement: the rows are updated from
/// arrays (each only if still in the state it is expected in) and their history rows are
/// inserted in the order the changes were made. It inserts one history row per transition
/// that landed, so its count says whether all did. A plan that stops completes the claimed job
/// it runs, in the same statement: joined from the input arrays (a statement whose count falls
/// short is rolled back, so a job is completed only with its plan), and "claimed" said as "none
/// of the others" so that no partial index on claimed jobs can serve it — a cached plan would
/// otherwise scan every claimed job once per stopping plan instead of looking each job up by
/// its plan.
const BULK: &str = "WITH sv AS (
        SELECT * FROM unnest($1::int4[], $2::text[], $3::int4[], $4::text[], $5::text[],
            $6::int4[], $7::int8[], $8::int8[], $9::text[], $10::text[], $11::int8[], $12::text[],
            $13::text[], $14::int8[], $15::text[], $16::text[])
        AS t(ord, plan_id, idx, from_state, state, attempt, started_at, ended_at, output,
            failure, deadline, warning, group_progress, at, data, actor)),
    su AS (
        UPDATE steps s SET state = sv.state, attempt = sv.attempt, started_at = sv.started_at,
            ended_at = sv.ended_at, output = sv.output, failure = sv.failure,
            deadline = sv.deadline, warning = sv.warning, group_progress = sv.group_progress
        FROM sv WHERE s.plan_id = sv.plan_id AND s.idx = sv.idx AND s.state = sv.from_state
        RETURNING sv.ord, sv.plan_id, sv.idx, sv.from_state, sv.state, sv.at, sv.data, sv.actor),
    pv AS (
        SELECT * FROM unnest($17::int4[], $18::text[], $19::text[], $20::text[], $21::int8[],
            $22::text[], $23::text[])
        AS t(ord, id, from_state, state, at, data, actor)),
    pu AS (
        UPDATE plans p SET state = pv.state,
            started_at = CASE WHEN pv.state = 'running' THEN coalesce(p.started_at, pv.at) ELSE p.started_at END,
            ended_at = CASE WHEN pv.state = 'stopped' THEN pv.at ELSE p.ended_at END
        FROM pv WHERE p.id = pv.id AND p.state = pv.from_state
        RETURNING pv.ord, pv.id AS plan_id, NULL::int4 AS idx, pv.from_state, pv.state, pv.at,
            pv.data, pv.actor),
    ju AS (
        UPDATE jobs j SET state = 'complete', modified_at = pv.at,
            note = 'its plan ' || pv.id || ' stopped'
        FROM pv WHERE pv.state = 'stopped' AND j.plan_id = pv.id
            AND j.state NOT IN ('unclaimed', 'complete', 'trashed')
        RETURNING j.id, pv.at, pv.actor, j.attempts, j.note),
    jh AS (
        INSERT INTO job_events (job_id, at, by, from_state, to_state, attempt, note)
        SELECT id, at, actor, 'claimed', 'complete', attempts, note FROM ju)
    INSERT INTO events (plan_id, step, from_state, to_state, at, data, actor)
    SELECT plan_id, idx, from_state, state, at, data, actor
    FROM (SELECT * FROM su UNION ALL SELECT * FROM pu) x ORDER BY ord";

/// What a change is fenced on: changes of one row keep their order.
#[derive(Hash, PartialEq, Eq)]
enum Row {
    Plan(PlanId),
    Step(PlanId, u32),
    Bookkeeping(PlanId),
    Lock(PlanId),
    Reply(i64),
    Slots(PlanId),
}

/// The changes of a run of requests as a few statements. Changes are put in layers, each row
/// at most once per layer and in order across layers; each layer's transitions are one
/// [`BULK`] statement. (Within one writer transaction a row changes twice only when the
/// director decided twice without waiting for the first to be durable, which is rare: then the
/// history lists that row's second change after the layer's others.)
fn bulk_statements(changes: &[(&str, &Change)]) -> Result<Vec<Planned>> {
    use std::collections::HashMap;
    let mut layer_of: HashMap<Row, usize> = HashMap::new();
    let mut layers: Vec<Vec<usize>> = Vec::new();
    for (ord, (_, c)) in changes.iter().enumerate() {
        let row = match c {
            Change::Plan { plan, .. } => Row::Plan(*plan),
            Change::Step { plan, step, .. } => Row::Step(*plan, step.index),
            Change::Group { plan, step, .. } => Row::Step(*plan, *step),
            Change::Bookkeeping { plan, .. } => Row::Bookkeeping(*plan),
            Change::Reply { message, .. } => Row::Reply(*message),
            Change::Unlock { plan, .. } => Row::Lock(*plan),
            Change::Release { plan, .. } => Row::Slots(*plan),
        };
        let layer = layer_of.get(&row).map_or(0, |l| l + 1);
        layer_of.insert(row, layer);
        if layers.len() <= layer {
            layers.push(Vec::new());
        }
        layers[layer].push(ord);
    }
    let mut out = Vec::new();
    for layer in layers {
        let mut s_ord: Vec<i32> = Vec::new();
        let mut s_plan: Vec<String> = Vec::new();
        let mut s_idx: Vec<i32> = Vec::new();
        let mut s_from: Vec<&'static str> = Vec::new();
        let mut s_state: Vec<&'static str> = Vec::new();
        let mut s_attempt: Vec<i32> = Vec::new();
        let mut s_started: Vec<Option<i64>> = Vec::new();
        let mut s_ended: Vec<Option<i64>> = Vec::new();
        let mut s_output: Vec<Option<String>> = Vec::new();
        let mut s_failure: Vec<Option<String>> = Vec::new();
        let mut s_deadline: Vec<Option<i64>> = Vec::new();
        let mut s_warning: Vec<Option<String>> = Vec::new();
        let mut s_group: Vec<Option<String>> = Vec::new();
        let mut s_at: Vec<i64> = Vec::new();
        let mut s_data: Vec<Option<String>> = Vec::new();
        let mut s_actor: Vec<String> = Vec::new();
        let mut p_ord: Vec<i32> = Vec::new();
        let mut p_id: Vec<String> = Vec::new();
        let mut p_from: Vec<&'static str> = Vec::new();
        let mut p_state: Vec<&'static str> = Vec::new();
        let mut p_at: Vec<i64> = Vec::new();
        let mut p_data: Vec<Option<String>> = Vec::new();
        let mut p_actor: Vec<String> = Vec::new();
        let mut singles = Vec::new();
        let mut transitions = Vec::new();
        let (mut u_plan, mut u_owner, mut unlocks) = (Vec::new(), Vec::new(), Vec::new());
        let (mut r_plan, mut r_step, mut releases) = (Vec::new(), Vec::new(), Vec::new());
        for index in layer {
            let (by, c) = changes[index];
            let data = c.transition().and_then(|t| t.data_json());
            let ord = i32::try_from(index).unwrap_or(i32::MAX);
            if matches!(c, Change::Step { .. } | Change::Plan { .. }) {
                transitions.push(index);
            }
            match c {
                Change::Step {
                    plan,
                    from,
                    step,
                    at,
                } => {
                    s_ord.push(ord);
                    s_plan.push(plan.to_string());
                    s_idx.push(i32_of(step.index));
                    s_from.push(from.as_str());
                    s_state.push(step.state.as_str());
                    s_attempt.push(i32_of(step.attempt));
                    s_started.push(step.started_at);
                    s_ended.push(step.ended_at);
                    s_output.push(step.output.as_ref().map(to_json).transpose()?);
                    s_failure.push(step.failure.as_ref().map(to_json).transpose()?);
                    s_deadline.push(step.deadline);
                    s_warning.push(step.warning.clone());
                    s_group.push(step.group.as_ref().map(to_json).transpose()?);
                    s_at.push(*at);
                    s_data.push(data);
                    s_actor.push(by.to_string());
                }
                Change::Plan {
                    plan, from, to, at, ..
                } => {
                    p_ord.push(ord);
                    p_id.push(plan.to_string());
                    p_from.push(from.as_str());
                    p_state.push(to.as_str());
                    p_at.push(*at);
                    p_data.push(data);
                    p_actor.push(by.to_string());
                }
                Change::Unlock { plan, owner } => {
                    u_plan.push(plan.to_string());
                    u_owner.push(owner.clone());
                    unlocks.push(index);
                }
                Change::Release { plan, step } => {
                    r_plan.push(plan.to_string());
                    r_step.push(crate::slots::step_column(*step) as i32);
                    releases.push(index);
                }
                Change::Group { .. } | Change::Bookkeeping { .. } | Change::Reply { .. } => {
                    let (sql, params, fenced) = change_sql(c)?;
                    singles.push(Planned {
                        covers: vec![index],
                        wakes: Notify {
                            replies: matches!(c, Change::Reply { .. }),
                            ..Notify::default()
                        },
                        ..planned(sql, params, fenced)
                    });
                }
            }
        }
        let p_state_stops = p_state.contains(&plan::State::Stopped.as_str());
        if !transitions.is_empty() {
            out.push(Planned {
                sql: BULK,
                params: vec![
                    Box::new(s_ord),
                    Box::new(s_plan),
                    Box::new(s_idx),
                    Box::new(s_from),
                    Box::new(s_state),
                    Box::new(s_attempt),
                    Box::new(s_started),
                    Box::new(s_ended),
                    Box::new(s_output),
                    Box::new(s_failure),
                    Box::new(s_deadline),
                    Box::new(s_warning),
                    Box::new(s_group),
                    Box::new(s_at),
                    Box::new(s_data),
                    Box::new(s_actor),
                    Box::new(p_ord),
                    Box::new(p_id),
                    Box::new(p_from),
                    Box::new(p_state),
                    Box::new(p_at),
                    Box::new(p_data),
                    Box::new(p_actor),
                ],
                expect: Some(transitions.len() as u64),
                // A plan that stops may complete its job.
                wakes: Notify {
                    removals: p_state_stops,
                    ..Notify::default()
                },
                covers: transitions,
            });
        }
        if !unlocks.is_empty() {
            out.push(Planned {
                covers: unlocks,
                ..planned(
                    RELEASE_OWNED_MANY,
                    vec![Box::new(u_plan), Box::new(u_owner)],
                    false,
                )
            });
        }
        if !releases.is_empty() {
            out.push(Planned {
                covers: releases,
                ..planned(
                    RELEASE_SLOTS_MANY,
                    vec![Box::new(r_plan), Box::new(r_step)],
                    false,
                )
            });
        }
        out.extend(singles);
    }
    Ok(out)
}

/// Every new plan of a run in one statement: its steps and locks inserted alongside. It
/// inserts one plan row per new plan, so its count says whether all were new.
const CREATE_MANY: &str = "WITH si AS (
        INSERT INTO steps (plan_id, idx, name, state, attempt)
        SELECT plan_id, idx, name, state, 0
        FROM unnest($10::text[], $11::int4[], $12::text[], $13::text[]) AS s(plan_id, idx, name, state)),
    li AS (
        INSERT INTO locks (plan_id, owner, acquired_at)
        SELECT plan_id, owner, at FROM unnest($14::text[], $15::text[], $16::int8[]) AS l(plan_id, owner, at))
    INSERT INTO plans (id, flow_name, flow, inputs, state, created_at, phase, start_at, after_plans, needs)
    SELECT id, flow_name, flow, inputs, state, created_at, 'null', start_at, after_plans,
        ARRAY(SELECT json_array_elements_text(needs::json))
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
        $7::int8[], $8::text[], $9::text[])
        AS t(id, flow_name, flow, inputs, state, created_at, start_at, after_plans, needs)
    ON CONFLICT (id) DO NOTHING";

/// The new plans of a run as one [`CREATE_MANY`] statement.
fn bulk_create(plans: &[&NewPlan]) -> Result<Option<Planned>> {
    if plans.is_empty() {
        return Ok(None);
    }
    let mut ids = Vec::new();
    let (mut names, mut flows, mut inputs, mut states) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut created, mut start_at, mut after, mut needs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut s_plan, mut s_idx, mut s_name, mut s_state) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut l_plan, mut l_owner, mut l_at) = (Vec::new(), Vec::new(), Vec::new());
    let mut wakes = Notify::default();
    for plan in plans {
        let (record, steps) = plan.records();
        let key = record.id.to_string();
        wakes.plans |= plan.state == plan::State::Planned && plan.owner.is_none();
        for step in &steps {
            s_plan.push(key.clone());
            s_idx.push(i32_of(step.index));
            s_name.push(step.name.clone());
            s_state.push(step.state.as_str().to_string());
        }
        if let Some(owner) = &plan.owner {
            l_plan.push(key.clone());
            l_owner.push(owner.clone());
            l_at.push(record.created_at);
        }
        ids.push(key);
        names.push(record.flow.name.clone());
        flows.push(to_json(&record.flow)?);
        inputs.push(to_json(&record.inputs)?);
        states.push(record.state.as_str().to_string());
        created.push(record.created_at);
        start_at.push(record.start_at);
        after.push(to_json(&record.after)?);
        needs.push(to_json(&record.flow.needs())?);
    }
    let count = ids.len() as u64;
    Ok(Some(Planned {
        wakes,
        expect: Some(count),
        ..planned(
            CREATE_MANY,
            vec![
                Box::new(ids),
                Box::new(names),
                Box::new(flows),
                Box::new(inputs),
                Box::new(states),
                Box::new(created),
                Box::new(start_at),
                Box::new(after),
                Box::new(needs),
                Box::new(s_plan),
                Box::new(s_idx),
                Box::new(s_name),
                Box::new(s_state),
                Box::new(l_plan),
                Box::new(l_owner),
                Box::new(l_at),
            ],
            true,
        )
    }))
}

const HEARTBEAT: &str =
    "UPDATE nodes SET heartbeat_at = (extract(epoch from clock_timestamp()) * 1000)::bigint
     WHERE id = $1";
const NODE_REPORT: &str = "UPDATE nodes SET report = $2 WHERE id = $1";
const RELEASE: &str = "DELETE FROM locks WHERE plan_id = $1 AND ($2::text IS NULL OR owner = $2)";
const CREATE_PLAN: &str = "INSERT INTO plans (id, flow_name, flow, inputs, state, created_at, phase, start_at, after_plans, needs)
     VALUES ($1, $2, $3, $4, $5, $6, 'null', $7, $8, $9)
     ON CONFLICT (id) DO NOTHING";
const CREATE_STEPS: &str = "INSERT INTO steps (plan_id, idx, name, state, attempt)
     SELECT $1, i, n, s, 0 FROM unnest($2::int[], $3::text[], $4::text[]) AS t(i, n, s)";
/// Takes a plan's lock, or keeps it if `owner` holds it already; touches no row if the plan
/// does not exist or another owner holds it (the one-by-one path then says which).
const ACQUIRE: &str = "INSERT INTO locks (plan_id, owner, acquired_at)
     SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM plans WHERE id = $1)
     ON CONFLICT (plan_id) DO UPDATE SET owner = locks.owner WHERE locks.owner = excluded.owner";
const CREATE_LOCK: &str = "INSERT INTO locks (plan_id, owner, acquired_at) VALUES ($1, $2, $3)";

/// The statements of a pipelinable write.
fn statements(w: &Write) -> Result<Vec<Planned>> {
    Ok(match w {
        Write::Apply(by, changes) => {
            let changes: Vec<(&str, &Change)> = changes.iter().map(|c| (by.as_str(), c)).collect();
            bulk_statements(&changes)?
        }
        Write::Release(plan, owner) => vec![Planned {
            wakes: Notify {
                plans: true,
                ..Notify::default()
            },
            ..planned(
                RELEASE,
                vec![Box::new(plan.to_string()), Box::new(owner.clone())],
                false,
            )
        }],
        Write::Acquire(plan, owner) => vec![planned(
            ACQUIRE,
            vec![
                Box::new(plan.to_string()),
                Box::new(owner.clone()),
                Box::new(now_millis()),
            ],
            true,
        )],
        Write::Heartbeat(node, _) => vec![planned(HEARTBEAT, vec![Box::new(node.clone())], true)],
        Write::NodeReport(node, report) => vec![planned(
            NODE_REPORT,
            vec![Box::new(node.clone()), Box::new(report.clone())],
            true,
        )],
        Write::Create(plan) => {
            let (record, steps) = plan.records();
            let key = record.id.to_string();
            let wakes = Notify {
                plans: plan.state == plan::State::Planned && plan.owner.is_none(),
                ..Notify::default()
            };
            let mut out = vec![Planned {
                wakes,
                ..planned(
                    CREATE_PLAN,
                    vec![
                        Box::new(key.clone()),
                        Box::new(record.flow.name.clone()),
                        Box::new(to_json(&record.flow)?),
                        Box::new(to_json(&record.inputs)?),
                        Box::new(record.state.as_str()),
                        Box::new(record.created_at),
                        Box::new(record.start_at),
                        Box::new(to_json(&record.after)?),
                        Box::new(record.flow.needs()),
                    ],
                    true,
                )
            }];
            out.push(planned(
                CREATE_STEPS,
                vec![
                    Box::new(key.clone()),
                    Box::new(steps.iter().map(|s| i32_of(s.index)).collect::<Vec<i32>>()),
                    Box::new(
                        steps
                            .iter()
                            .map(|s| s.name.clone())
                            .collect::<Vec<String>>(),
                    ),
                    Box::new(
                        steps
                            .iter()
                            .map(|s| s.state.as_str().to_string())
                            .collect::<Vec<String>>(),
                    ),
                ],
                false,
            ));
            if let Some(owner) = &plan.owner {
                out.push(planned(
                    CREATE_LOCK,
                    vec![
                        Box::new(key),
                        Box::new(owner.clone()),
                        Box::new(record.created_at),
                    ],
                    false,
                ));
            }
            out
        }
        _ => {
            return Err(Error::Backend(
                "not a pipelinable write (a bug in the writer)".into(),
            ))
        }
    })
}

/// Sends a run of requests at once — a savepoint and every statement — answered in order.
/// Any conflict or error rolls the run back to its savepoint and is returned.
async fn pipelined(conn: &mut Conn, run: &[Request]) -> Result<Notify> {
    // New plans first: nothing earlier in the run can touch a plan that does not exist yet,
    // and a plan's creation between two requests' changes would split their bulk statement
    // in two — with a plan started per job, into one statement per plan.
    let creates: Vec<&NewPlan> = run
        .iter()
        .filter_map(|r| match &r.write {
            Write::Create(plan) => Some(plan.as_ref()),
            _ => None,
        })
        .collect();
    let mut all: Vec<Planned> = bulk_create(&creates)?.into_iter().collect();
    // Consecutive changes (from any number of requests) go in bulk; other writes as they are.
    let mut changes: Vec<(&str, &Change)> = Vec::new();
    // Every message sent in the run, in order, in one statement at its end (they are seen
    // when the transaction commits, wherever they stand in it).
    let messages: Vec<&WireMessage> = run
        .iter()
        .filter_map(|r| match &r.write {
            Write::SendMessages(ms) => Some(ms.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    for req in run {
        match &req.write {
            Write::Apply(by, cs) => changes.extend(cs.iter().map(|c| (by.as_str(), c))),
            Write::Create(_) | Write::SendMessages(_) => {}
            other => {
                all.extend(bulk_statements(&changes)?);
                changes.clear();
                all.extend(statements(other)?);
            }
        }
    }
    all.extend(bulk_statements(&changes)?);
    if !messages.is_empty() {
        all.push(Planned {
            wakes: Notify {
                messages: true,
                ..Notify::default()
            },
            ..planned(messages::SEND, messages::send_params(&messages), false)
        });
    }
    let mut prepared = Vec::with_capacity(all.len());
    for p in &all {
        prepared.push(conn.prepare(p.sql).await?);
    }
    let (saved, counts) = {
        let client = &conn.client;
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = all
            .iter()
            .map(|p| {
                p.params
                    .iter()
                    .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        let savepoint = client.batch_execute("SAVEPOINT run");
        let statements = join_all(
            prepared
                .iter()
                .zip(&refs)
                .map(|(stmt, params)| client.execute(stmt, params)),
        );
        tokio::join!(savepoint, statements)
    };
    let mut failed = saved.map_err(classify).err();
    let mut wakes = Notify::default();
    for (count, p) in counts.into_iter().zip(&all) {
        match count {
            Ok(n) if p.expect.is_some_and(|want| n != want) => {
                failed = failed.or(Some(Error::Backend("conflict".into())))
            }
            Ok(0) => {}
            Ok(_) => wakes.merge(p.wakes),
            Err(e) => failed = failed.or(Some(classify(e))),
        }
    }
    match failed {
        None => Ok(wakes),
        Some(e) => {
            conn.client
                .batch_execute("ROLLBACK TO run")
                .await
                .map_err(classify)?;
            Err(e)
        }
    }
}

/// Every request in its own savepoint, so that one caller's conflict fails only its own.
/// `Err` only when the transaction itself is lost.
/// Slot requests, taken together behind a savepoint (`slots::acquire_all`); should any fail,
/// they are rolled back and asked again one by one, so that one request's error is its own.
/// They come after the transaction's other writes: nothing a caller queued later depends on a
/// slot it has not been told it got, and a plan's end queued behind its request (its lock
/// given back) makes the request find it gone rather than leave a slot behind.
async fn slot_requests(
    conn: &mut Conn,
    segment: &[Request],
    notify: &mut Notify,
) -> Result<Vec<Result<Output>>> {
    let requests: Vec<&crate::SlotRequest> = segment
        .iter()
        .filter_map(|r| match &r.write {
            Write::AcquireSlots(req) => Some(req.as_ref()),
            _ => None,
        })
        .collect();
    conn.client
        .batch_execute("SAVEPOINT asks")
        .await
        .map_err(classify)?;
    match super::slots::acquire_all(conn, &requests).await {
        Ok(answers) => {
            conn.client
                .batch_execute("RELEASE asks")
                .await
                .map_err(classify)?;
            Ok(answers.into_iter().map(|a| Ok(Output::Slot(a))).collect())
        }
        Err(e @ Error::Unavailable(_)) => Err(e),
        Err(_) => {
            conn.client
                .batch_execute("ROLLBACK TO asks; RELEASE asks")
                .await
                .map_err(classify)?;
            one_by_one(conn, segment, notify).await
        }
    }
}

/// New plans with idempotency keys, taken together behind a savepoint: expired keys
/// deleted, every distinct key inserted in one statement (`DO NOTHING`: a racing node's
/// insert of a key waits for this transaction and then finds it taken), the holders of the
/// keys not taken read, and the plans that took theirs created in one statement. A key given
/// twice in the run goes to the first. Any failure rolls back and goes one by one.
async fn keyed_plans(
    conn: &mut Conn,
    segment: &[Request],
    notify: &mut Notify,
) -> Result<Vec<Result<Output>>> {
    use std::collections::HashMap;
    let mut first: HashMap<&str, &NewPlan> = HashMap::new();
    let (mut keys, mut ids, mut cutoffs) = (Vec::new(), Vec::new(), Vec::new());
    let now = now_millis();
    for r in segment {
        if let Write::CreateOnce(plan, key, window) = &r.write {
            if let std::collections::hash_map::Entry::Vacant(v) = first.entry(key.as_str()) {
                v.insert(plan.as_ref());
                keys.push(key.clone());
                ids.push(plan.id.to_string());
                cutoffs.push(now - window);
            }
        }
    }
    conn.client
        .batch_execute("SAVEPOINT keyed")
        .await
        .map_err(classify)?;
    let result: Result<HashMap<String, PlanId>> = async {
        conn.execute(
            "DELETE FROM plan_keys k USING unnest($1::text[], $2::int8[]) AS t(key, cutoff)
             WHERE k.key = t.key AND k.created_at <= t.cutoff",
            &[&keys, &cutoffs],
        )
        .await?;
        let took: Vec<String> = conn
            .query(
                "INSERT INTO plan_keys (key, plan_id, created_at)
                 SELECT key, plan_id, $3 FROM unnest($1::text[], $2::text[]) AS t(key, plan_id)
                 ON CONFLICT (key) DO NOTHING
                 RETURNING key",
                &[&keys, &ids, &now],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut holders: HashMap<String, PlanId> = HashMap::new();
        let creates: Vec<&NewPlan> = took
            .iter()
            .filter_map(|k| first.get(k.as_str()).copied())
            .collect();
        for p in &creates {
            notify.plans |= p.state == plan::State::Planned && p.owner.is_none();
        }
        for k in &took {
            if let Some(p) = first.get(k.as_str()) {
                holders.insert(k.clone(), p.id);
            }
        }
        let others: Vec<&String> = keys.iter().filter(|k| !holders.contains_key(*k)).collect();
        if !others.is_empty() {
            for r in conn
                .query(
                    "SELECT key, plan_id FROM plan_keys WHERE key = ANY($1)",
                    &[&others],
                )
                .await?
            {
                holders.insert(r.get(0), parse_id(r.get(1))?);
            }
        }
        if let Some(p) = bulk_create(&creates)? {
            let params: Vec<&(dyn ToSql + Sync)> = p
                .params
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect();
            conn.execute(p.sql, &params).await?;
        }
        Ok(holders)
    }
    .await;
    match result {
        Ok(holders) => {
            conn.client
                .batch_execute("RELEASE keyed")
                .await
                .map_err(classify)?;
            Ok(segment
                .iter()
                .map(|r| match &r.write {
                    Write::CreateOnce(_, key, _) => holders
                        .get(key)
                        .map(|id| Output::Plans(vec![*id]))
                        .ok_or_else(|| {
                            Error::Backend(format!("idempotency key `{key}` has no plan"))
                        }),
                    _ => Err(Error::Backend(
                        "not a keyed plan (a bug in the writer)".into(),
                    )),
                })
                .collect())
        }
        Err(e @ Error::Unavailable(_)) => Err(e),
        Err(_) => {
            conn.client
                .batch_execute("ROLLBACK TO keyed; RELEASE keyed")
                .await
                .map_err(classify)?;
            one_by_one(conn, segment, notify).await
        }
    }
}

async fn one_by_one(
    conn: &mut Conn,
    batch: &[Request],
    notify: &mut Notify,
) -> Result<Vec<Result<Output>>> {
    let mut results = Vec::with_capacity(batch.len());
    for req in batch {
        conn.client
            .batch_execute("SAVEPOINT w")
            .await
            .map_err(classify)?;
        let mut wants = Notify::default();
        let outcome = apply(conn, &req.write, &mut wants).await;
        let end = if outcome.is_ok() {
            notify.merge(wants);
            "RELEASE w"
        } else {
            "ROLLBACK TO w; RELEASE w"
        };
        conn.client.batch_execute(end).await.map_err(classify)?;
        if let Err(Error::Unavailable(m)) = &outcome {
            return Err(Error::Unavailable(m.clone()));
        }
        results.push(outcome);
    }
    Ok(results)
}

/// Which wake-ups a transaction sends when it commits.
#[derive(Default, Clone, Copy, Debug)]
struct Notify {
    plans: bool,
    mailbox: bool,
    replies: bool,
    jobs: bool,
    removals: bool,
    messages: bool,
}

impl Notify {
    fn merge(&mut self, other: Notify) {
        self.plans |= other.plans;
        self.mailbox |= other.mailbox;
        self.replies |= other.replies;
        self.jobs |= other.jobs;
        self.removals |= other.removals;
        self.messages |= other.messages;
    }

    fn payloads(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.plans {
            out.push("plans");
        }
        if self.mailbox {
            out.push("mailbox");
        }
        if self.replies {
            out.push("replies");
        }
        if self.jobs {
            out.push("jobs");
        }
        if self.removals {
            out.push("removal");
        }
        if self.messages {
            out.push("messages");
        }
        out
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

fn i32_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

const CHANGE_GROUP: &str = "UPDATE steps SET group_progress = $4
    WHERE plan_id = $1 AND idx = $2 AND attempt = $3 AND state = 'running'";

const RELEASE_OWNED: &str = "DELETE FROM locks WHERE plan_id = $1 AND owner = $2";
/// The locks given back with plans' last changes, all at once.
const RELEASE_OWNED_MANY: &str = "DELETE FROM locks l
    USING unnest($1::text[], $2::text[]) AS u(plan_id, owner)
    WHERE l.plan_id = u.plan_id AND l.owner = u.owner";
/// The slots given back with a layer's changes, all at once: a step's (its index), or all of
/// a plan's (-1).
const RELEASE_SLOTS_MANY: &str = "DELETE FROM slots s
    USING unnest($1::text[], $2::int4[]) AS r(plan_id, step)
    WHERE s.plan_id = r.plan_id AND (r.step < 0 OR s.step = r.step)";
const CHANGE_BOOKKEEPING: &str = "UPDATE plans SET phase = $2 WHERE id = $1";
/// Answers a message still pending.
const REPLY: &str =
    "UPDATE mailbox SET status = $2, reason = $3 WHERE id = $1 AND status = 'pending'";

/// A reply as the mailbox table keeps it: status and reason.
fn reply_columns(reply: &Reply) -> (&'static str, Option<String>) {
    match reply {
        Reply::Pending => ("pending", None),
        Reply::Done => ("done", None),
        Reply::Refused(why) => ("refused", Some(why.clone())),
    }
}

/// The statement and parameters of a group-progress or bookkeeping change (transitions go in
/// [`BULK`] statements); whether it must touch a row.
fn change_sql(c: &Change) -> Result<(&'static str, Vec<Param>, bool)> {
    Ok(match c {
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
        Change::Bookkeeping { plan, bookkeeping } => (
            CHANGE_BOOKKEEPING,
            vec![Box::new(plan.to_string()), Box::new(to_json(bookkeeping)?)],
            false,
        ),
        Change::Reply { message, reply, .. } => {
            let (status, reason) = reply_columns(reply);
            (
                REPLY,
                vec![Box::new(*message), Box::new(status), Box::new(reason)],
                false,
            )
        }
        Change::Unlock { plan, owner } => (
            RELEASE_OWNED,
            vec![Box::new(plan.to_string()), Box::new(owner.clone())],
            false,
        ),
        Change::Plan { .. } | Change::Step { .. } | Change::Release { .. } => {
            return Err(Error::Backend(
                "a transition or release outside a bulk statement (a bug in the writer)".into(),
            ))
        }
    })
}

/// Applies one request's changes statement by statement, checking each change's fence first,
/// so that the first change that would find another state than it expects is reported exactly
/// (the caller rolls the request back). The one-by-one path; runs of requests go pipelined.
async fn apply_changes(conn: &mut Conn, by: &str, changes: &[Change]) -> Result<()> {
    let pairs: Vec<(&str, &Change)> = changes.iter().map(|c| (by, c)).collect();
    for p in bulk_statements(&pairs)? {
        for &i in &p.covers {
            fence(conn, &changes[i]).await?;
        }
        let params: Vec<&(dyn ToSql + Sync)> = p
            .params
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let count = conn.execute(p.sql, &params).await?;
        if p.expect.is_some_and(|want| count != want) {
            return Err(Error::Backend(format!(
                "{count} of {:?} changes landed although every fence held",
                p.expect
            )));
        }
    }
    Ok(())
}

/// Checks that the row a change is fenced on is in the state it expects: a conflict (or
/// not-found) error naming what it found if not.
async fn fence(conn: &mut Conn, c: &Change) -> Result<()> {
    let plan = c.plan();
    let key = plan.to_string();
    let (step, expected) = match c {
        Change::Plan { from, .. } => (None, from.as_str().to_string()),
        Change::Step { step, from, .. } => (Some(step.index), from.as_str().to_string()),
        Change::Group { step, attempt, .. } => {
            (Some(*step), format!("running (attempt {attempt})"))
        }
        Change::Bookkeeping { .. }
        | Change::Reply { .. }
        | Change::Unlock { .. }
        | Change::Release { .. } => return Ok(()),
    };
    let found = match step {
        None => conn
            .query_opt("SELECT state FROM plans WHERE id = $1", &[&key])
            .await?
            .map(|r| r.get::<_, String>(0)),
        Some(i) => conn
            .query_opt(
                "SELECT state, attempt FROM steps WHERE plan_id = $1 AND idx = $2",
                &[&key, &i32_of(i)],
            )
            .await?
            .map(|r| match c {
                Change::Group { .. } => {
                    format!("{} (attempt {})", r.get::<_, String>(0), r.get::<_, i32>(1))
                }
                _ => r.get::<_, String>(0),
            }),
    };
    match found {
        Some(found) if found == expected => Ok(()),
        Some(found) => Err(Error::Conflict {
            plan,
            step,
            expected,
            found,
        }),
        None => Err(Error::NotFound(match step {
            None => key,
            Some(i) => format!("{key} step {i}"),
        })),
    }
}

/// Releases every lock `owner` holds; its plans can be claimed again.
async fn release_all(conn: &mut Conn, owner: &str, notify: &mut Notify) -> Result<Output> {
    super::slots::drop_owner(conn, owner).await?;
    let rows = conn
        .query(
            "DELETE FROM locks WHERE owner = $1 RETURNING plan_id",
            &[&owner],
        )
        .await?;
    notify.plans |= !rows.is_empty();
    Ok(Output::Plans(ids(rows)?))
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
        Write::Checkpoint | Write::Backup(_) => Err(Error::Unsupported(
            "PostgreSQL is backed up with pg_dump".into(),
        )),
        Write::PruneListed(..) => Err(Error::Backend(
            "PostgreSQL prunes in one statement (a bug in the store)".into(),
        )),
        Write::Create(plan) => {
            create(conn, plan).await?;
            notify.plans |= plan.state == plan::State::Planned && plan.owner.is_none();
            Ok(Output::Unit)
        }
        Write::CreateOnce(plan, key, window) => {
            // Taking the key is the race: a racing insert of the same key waits for this
            // transaction, then finds it taken (its update's condition fails) and answers the
            // plan that took it. The condition reads only the key's own row: a subquery on
            // `plans` would see the statement's older snapshot, miss the plan just committed,
            // and take the key again. (A pruned plan's key goes with it.)
            let now = now_millis();
            let id = plan.id.to_string();
            let took = conn
                .query(
                    "INSERT INTO plan_keys (key, plan_id, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE
                       SET plan_id = excluded.plan_id, created_at = excluded.created_at
                       WHERE plan_keys.created_at <= $4
                     RETURNING plan_id",
                    &[key, &id, &now, &(now - window)],
                )
                .await?;
            if took.is_empty() {
                let held = conn
                    .query("SELECT plan_id FROM plan_keys WHERE key = $1", &[key])
                    .await?;
                return Ok(Output::Plans(ids(held)?));
            }
            create(conn, plan).await?;
            notify.plans |= plan.state == plan::State::Planned && plan.owner.is_none();
            Ok(Output::Plans(vec![plan.id]))
        }
        Write::Apply(by, changes) => {
            apply_changes(conn, by, changes).await?;
            Ok(Output::Unit)
        }
        Write::PutSchedule(s) => {
            super::schedules::put(conn, s).await?;
            Ok(Output::Unit)
        }
        Write::RemoveSchedule(name) => {
            super::schedules::remove(conn, name).await?;
            Ok(Output::Unit)
        }
        Write::AcquireSlots(req) => Ok(Output::Slot(super::slots::acquire(conn, req).await?)),
        Write::PutQueue(q) => {
            super::slots::put_queue(conn, q).await?;
            Ok(Output::Unit)
        }
        Write::RemoveQueue(name) => {
            super::slots::remove_queue(conn, name).await?;
            Ok(Output::Unit)
        }
        Write::FireSchedules(now, trigger) => {
            let mut fired = Vec::new();
            for f in super::schedules::due(conn, *now, trigger.as_deref()).await? {
                for p in &f.plans {
                    create(conn, p).await?;
                }
                super::schedules::advance(conn, &f).await?;
                fired.extend(f.fired());
            }
            notify.plans |= !fired.is_empty();
            Ok(Output::Fired(fired))
        }
        Write::Prune(before, limit) => {
            // Oldest first, one bounded batch; rows other transactions hold are left for the
            // next batch rather than waited for.
            let rows = conn
                .query(
                    "SELECT p.id FROM plans p
                     WHERE p.state = 'stopped' AND p.ended_at < $1
                       AND NOT EXISTS (SELECT 1 FROM plans q
                                       WHERE q.state IN ('scheduled', 'pending')
                                         AND strpos(q.after_plans, p.id) > 0)
                     ORDER BY p.ended_at LIMIT $2
                     FOR UPDATE SKIP LOCKED",
                    &[before, &i64::from(*limit)],
                )
                .await?;
            let keys: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            for sql in [
                "DELETE FROM step_logs WHERE plan_id = ANY($1)",
                "DELETE FROM plan_keys WHERE plan_id = ANY($1)",
                "DELETE FROM events WHERE plan_id = ANY($1)",
                "DELETE FROM mailbox WHERE plan_id = ANY($1)",
                "DELETE FROM steps WHERE plan_id = ANY($1)",
                "DELETE FROM inhibitions WHERE plan_id = ANY($1)",
                "DELETE FROM locks WHERE plan_id = ANY($1)",
                "DELETE FROM plans WHERE id = ANY($1)",
            ] {
                conn.execute(sql, &[&keys]).await?;
            }
            Ok(Output::Plans(ids(rows)?))
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
                "INSERT INTO nodes (id, name, started_at, heartbeat_at, process, capabilities)
                 VALUES ($1, $2, $3, (extract(epoch from clock_timestamp()) * 1000)::bigint, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                &[&n.id, &n.name, &n.started_at, &n.process, &n.capabilities],
            )
            .await?;
            conn.execute(
                "INSERT INTO capabilities (capability, seen_at)
                 SELECT c, $2 FROM unnest($1::text[]) AS c
                 ON CONFLICT (capability) DO UPDATE SET seen_at = excluded.seen_at",
                &[&n.capabilities, &n.started_at],
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
            let (back, lost) = jobs::lose_claims(conn, node, "invalidation").await?;
            notify.jobs |= back > 0;
            notify.removals |= lost > back;
            release_all(conn, node, notify).await
        }
        Write::ReleaseLocks(owner) => release_all(conn, owner, notify).await,
        Write::PostJob(job) => {
            let job = jobs::post(conn, job).await?;
            notify.jobs = true;
            Ok(Output::Jobs(vec![job]))
        }
        Write::ClaimJob(id, who) => Ok(Output::Jobs(vec![jobs::claim(conn, *id, who).await?])),
        Write::ClaimJobs(who, limit, can_run, with_plans) => Ok(Output::Claimed(
            jobs::claim_many(conn, who, *limit, can_run, *with_plans).await?,
        )),
        Write::ReleaseJob(id, who, attempt, how) => {
            let job = jobs::release(conn, *id, who, *attempt, *how).await?;
            notify.jobs |= job.state == weft_model::job::State::Unclaimed;
            notify.removals |= !job.state.on_board();
            Ok(Output::Jobs(vec![job]))
        }
        Write::RetryJob(id, by) => {
            let job = jobs::retry(conn, *id, by).await?;
            notify.jobs = true;
            Ok(Output::Jobs(vec![job]))
        }
        Write::RegisterEntity(entity) => {
            jobs::register_entity(conn, entity).await?;
            Ok(Output::Unit)
        }
        Write::SendMessages(ms) => {
            messages::send(conn, ms).await?;
            notify.messages |= !ms.is_empty();
            Ok(Output::Unit)
        }
        Write::TakeMessages(topic, limit) => {
            Ok(Output::Messages(messages::take(conn, topic, *limit).await?))
        }
        Write::RegisterWorker(w) => {
            messages::register(conn, w).await?;
            Ok(Output::Unit)
        }
        Write::Logs(w) => {
            logs::write(conn, w).await?;
            Ok(Output::Unit)
        }
        Write::WorkerHeartbeat(topic, running) => {
            messages::heartbeat(conn, topic, *running).await?;
            Ok(Output::Unit)
        }
        Write::RemoveWorker(topic) => {
            messages::remove(conn, topic).await?;
            Ok(Output::Unit)
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
        Write::Claim(owner, limit, can_run) => {
            // Only plans whose every Rust task the claimer can run (routing by capability).
            let rows = conn
                .query(
                    "WITH c AS (
                        SELECT p.id FROM plans p
                        WHERE p.state IN ('planned', 'running')
                          AND NOT EXISTS (SELECT 1 FROM locks l WHERE l.plan_id = p.id)
                          AND NOT EXISTS (SELECT 1 FROM inhibitions i WHERE i.plan_id = p.id)
                          AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.plan_id = p.id)
                          AND p.needs <@ $4::text[]
                        ORDER BY p.id
                        LIMIT $3
                        FOR UPDATE SKIP LOCKED)
                     INSERT INTO locks (plan_id, owner, acquired_at)
                     SELECT id, $1, $2 FROM c
                     ON CONFLICT (plan_id) DO NOTHING
                     RETURNING plan_id",
                    &[owner, &now_millis(), &i64::from(*limit), can_run],
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
            let (status, reason) = reply_columns(reply);
            let n = conn.execute(REPLY, &[id, &status, &reason]).await?;
            notify.replies = true;
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
        let mut found = Vec::with_capacity(after.len());
        for p in after {
            found.push((p, prerequisite(conn, p).await?));
        }
        match judge_prerequisites(found) {
            Readiness::Failed(prerequisite) => {
                out.push(Due::FailedDependency { plan, prerequisite })
            }
            Readiness::Waiting => {}
            Readiness::Ready => {
                apply_changes(conn, by, &promotion(plan, now)).await?;
                out.push(Due::Ready(plan));
            }
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
    let needs = record.flow.needs();
    let inserted = conn
        .execute(
            "INSERT INTO plans (id, flow_name, flow, inputs, state, created_at, phase, start_at, after_plans, needs)
             VALUES ($1, $2, $3, $4, $5, $6, 'null', $7, $8, $9)
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
                &needs,
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
