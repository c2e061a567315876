//! The writer thread: the only owner of the write connection, and the group commit.

use super::wake::{Wakes, Want};
use super::{classify, jobs, messages, schedules};
use crate::codec::{to_json, MAX_BATCH};
pub(super) use crate::queue::{Output, Request, Write};
use crate::record::{judge_prerequisites, promotion, Readiness};
use crate::{Change, ClaimedJob, Due, Error, JobRecord, NewPlan, Reply, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::mpsc;
use weft_model::plan::{self, Outcome};
use weft_model::{now_millis, step, Millis, PlanId};

/// Serves requests until every sender is gone.
pub(super) fn run(mut conn: Connection, rx: mpsc::Receiver<Request>, wakes: Wakes) {
    while let Ok(first) = rx.recv() {
        if let Some(result) = outside_transactions(&conn, &first.write) {
            let _ = first.reply.send(result);
            continue;
        }
        let mut batch = vec![first];
        let mut after = None;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                // A write that runs outside transactions waits for the batch before it.
                Ok(r) if matches!(r.write, Write::Checkpoint | Write::Backup(_)) => {
                    after = Some(r);
                    break;
                }
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let results = commit(&mut conn, &batch);
        crate::metrics::committed(batch.len(), started.elapsed());
        wakes.send(wants(&batch, &results));
        for (req, result) in batch.into_iter().zip(results) {
            // The caller may have gone away; its write landed all the same.
            let _ = req.reply.send(result);
        }
        if let Some(req) = after {
            if let Some(result) = outside_transactions(&conn, &req.write) {
                let _ = req.reply.send(result);
            }
        }
    }
}

/// The writes that cannot run inside a transaction: a checkpoint and a backup.
fn outside_transactions(conn: &Connection, write: &Write) -> Option<Result<Output>> {
    match write {
        Write::Checkpoint => Some(
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(classify)
            .and_then(|busy| {
                if busy == 0 {
                    Ok(Output::Unit)
                } else {
                    Err(Error::Unavailable(
                        "the checkpoint could not finish: another process is reading".into(),
                    ))
                }
            }),
        ),
        Write::Backup(path) => Some(
            conn.execute("VACUUM INTO ?1", params![path.display().to_string()])
                .map(|_| Output::Unit)
                .map_err(|e| {
                    Error::Unavailable(format!("cannot back up to {}: {e}", path.display()))
                }),
        ),
        _ => None,
    }
}

/// What a committed batch tells the processes listening beside the file: plans became
/// claimable (created, released, promoted), or the mailbox has a message.
fn wants(batch: &[Request], results: &[Result<Output>]) -> Want {
    let mut want = Want::default();
    for (req, result) in batch.iter().zip(results) {
        match (&req.write, result) {
            (_, Err(_)) => {}
            // One plan's lock released by its executor: the plan ended or paused, nothing
            // to claim. A node's locks released at once: its plans wait for another.
            // A new plan is for nodes only when no one took its lock as it was stored.
            (Write::Create(plan), _) => {
                want.plans |= plan.owner.is_none() && plan.state == plan::State::Planned
            }
            (Write::CreateOnce(plan, ..), Ok(Output::Plans(ids))) => {
                want.plans |= ids.first() == Some(&plan.id)
                    && plan.owner.is_none()
                    && plan.state == plan::State::Planned
            }
            (Write::ReleaseLocks(_), _) => want.plans = true,
            (Write::FireSchedules(..), Ok(Output::Fired(f))) => want.plans |= !f.is_empty(),
            (Write::PromoteDue(..), Ok(Output::Due(due))) if !due.is_empty() => want.plans = true,
            (Write::Post(..), _) => want.mailbox = true,
            (Write::SendMessages(ms), Ok(_)) => want.messages |= !ms.is_empty(),
            (Write::PostJob(_) | Write::RetryJob(..), _) => want.jobs = true,
            (Write::ReleaseJob(..), Ok(Output::Jobs(j))) => {
                use weft_model::job::State;
                want.jobs |= j.iter().any(|j| j.state == State::Unclaimed);
                want.removals |= j.iter().any(|j| !j.state.on_board());
            }
            (Write::InvalidateNode(_), _) => {
                want.plans = true;
                want.jobs = true;
                want.removals = true;
            }
            (Write::Reply(..), _) => want.replies = true,
            (Write::Apply(_, changes), _) => {
                want.replies |= changes.iter().any(|c| matches!(c, Change::Reply { .. }));
                // A plan that stops may complete its job.
                want.removals |= changes
                    .iter()
                    .any(|c| matches!(c, Change::Plan { to, .. } if *to == plan::State::Stopped));
            }
            _ => {}
        }
    }
    want
}

/// Applies every request in one transaction, each in a savepoint; returns each one's result.
fn commit(conn: &mut Connection, batch: &[Request]) -> Vec<Result<Output>> {
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = classify(e);
            return batch.iter().map(|_| Err(e.clone())).collect();
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    for req in batch {
        let outcome = (|| -> Result<Output> {
            tx.execute_batch("SAVEPOINT w").map_err(classify)?;
            match apply(&tx, &req.write) {
                Ok(out) => tx
                    .execute_batch("RELEASE w")
                    .map_err(classify)
                    .map(|()| out),
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

fn apply(conn: &Connection, write: &Write) -> Result<Output> {
    let unit = |r: Result<()>| r.map(|()| Output::Unit);
    match write {
        Write::Checkpoint | Write::Backup(_) => Err(Error::Backend(
            "a checkpoint or backup inside a transaction (a bug in the writer)".into(),
        )),
        Write::Create(plan) => unit(create(conn, plan)),
        Write::CreateOnce(plan, key, window) => {
            let now = now_millis();
            let held: Option<String> = conn
                .prepare_cached(
                    "SELECT k.plan_id FROM plan_keys k JOIN plans p ON p.id = k.plan_id
                     WHERE k.key = ?1 AND k.created_at > ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![key, now - window], |r| r.get(0))
                        .optional()
                })
                .map_err(classify)?;
            if let Some(held) = held {
                return Ok(Output::Plans(parse_ids(vec![held])?));
            }
            conn.prepare_cached(
                "INSERT INTO plan_keys (key, plan_id, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET plan_id = excluded.plan_id, created_at = excluded.created_at",
            )
            .and_then(|mut s| s.execute(params![key, plan.id.to_string(), now]))
            .map_err(classify)?;
            create(conn, plan)?;
            Ok(Output::Plans(vec![plan.id]))
        }
        Write::Apply(by, changes) => unit(changes.iter().try_for_each(|c| change(conn, by, c))),
        Write::PruneListed(before, ids) => prune(conn, *before, ids).map(Output::Plans),
        Write::PutSchedule(s) => unit(schedules::put(conn, s)),
        Write::RemoveSchedule(name) => unit(schedules::remove(conn, name)),
        Write::AcquireSlots(req) => {
            super::slots::acquire(conn, req, weft_model::now_millis()).map(Output::Slot)
        }
        Write::PutQueue(q) => unit(super::slots::put_queue(conn, q)),
        Write::RemoveQueue(name) => unit(super::slots::remove_queue(conn, name)),
        Write::FireSchedules(now, trigger) => {
            let mut fired = Vec::new();
            for f in schedules::due(conn, *now, trigger.as_deref())? {
                for p in &f.plans {
                    create(conn, p)?;
                }
                schedules::advance(conn, &f)?;
                fired.extend(f.fired());
            }
            Ok(Output::Fired(fired))
        }
        Write::Inhibit(plan) => {
            let key = plan.to_string();
            if !plan_exists(conn, &key)? {
                return Err(Error::NotFound(key));
            }
            conn.execute(
                "INSERT OR IGNORE INTO inhibitions (plan_id, at) VALUES (?1, ?2)",
                params![key, now_millis()],
            )
            .map_err(classify)?;
            Ok(Output::Unit)
        }
        Write::RegisterNode(n) => {
            conn.execute(
                "INSERT INTO nodes (id, name, started_at, heartbeat_at, process, capabilities)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                params![
                    n.id,
                    n.name,
                    n.started_at,
                    n.heartbeat_at,
                    n.process,
                    to_json(&n.capabilities)?
                ],
            )
            .map_err(classify)?;
            let mut known = conn
                .prepare_cached(
                    "INSERT INTO capabilities (capability, seen_at) VALUES (?1, ?2)
                     ON CONFLICT (capability) DO UPDATE SET seen_at = excluded.seen_at",
                )
                .map_err(classify)?;
            for c in &n.capabilities {
                known.execute(params![c, n.started_at]).map_err(classify)?;
            }
            Ok(Output::Unit)
        }
        Write::Heartbeat(node, at) => {
            let n = conn
                .prepare_cached("UPDATE nodes SET heartbeat_at = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![node, at]))
                .map_err(classify)?;
            if n == 0 {
                return Err(Error::NotFound(format!("node {node}")));
            }
            Ok(Output::Unit)
        }
        Write::InvalidateNode(node) => {
            conn.execute("DELETE FROM nodes WHERE id = ?1", [node])
                .map_err(classify)?;
            jobs::lose_claims(conn, node, "invalidation")?;
            super::slots::drop_owner(conn, node)?;
            let mut stmt = conn
                .prepare_cached("DELETE FROM locks WHERE owner = ?1 RETURNING plan_id")
                .map_err(classify)?;
            let ids: Vec<String> = stmt
                .query_map([node], |r| r.get(0))
                .map_err(classify)?
                .collect::<std::result::Result<_, _>>()
                .map_err(classify)?;
            Ok(Output::Plans(parse_ids(ids)?))
        }
        Write::ReleaseLocks(owner) => {
            super::slots::drop_owner(conn, owner)?;
            let mut stmt = conn
                .prepare_cached("DELETE FROM locks WHERE owner = ?1 RETURNING plan_id")
                .map_err(classify)?;
            let ids: Vec<String> = stmt
                .query_map([owner], |r| r.get(0))
                .map_err(classify)?
                .collect::<std::result::Result<_, _>>()
                .map_err(classify)?;
            Ok(Output::Plans(parse_ids(ids)?))
        }
        Write::NodeReport(node, report) => {
            let n = conn
                .prepare_cached("UPDATE nodes SET report = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![node, report]))
                .map_err(classify)?;
            if n == 0 {
                return Err(Error::NotFound(format!("node {node}")));
            }
            Ok(Output::Unit)
        }
        Write::Claim(owner, limit, can_run) => claim(conn, owner, *limit, can_run),
        Write::PromoteDue(by, now) => promote_due(conn, by, *now).map(Output::Due),
        Write::Post(plan, command) => {
            let key = plan.to_string();
            if !plan_exists(conn, &key)? {
                return Err(Error::NotFound(key));
            }
            let command = to_json(command)?;
            let id = conn
                .prepare_cached(
                    "INSERT INTO mailbox (plan_id, command, created_at) VALUES (?1, ?2, ?3) RETURNING id",
                )
                .and_then(|mut s| s.query_row(params![key, command, now_millis()], |r| r.get(0)))
                .map_err(classify)?;
            Ok(Output::Id(id))
        }
        Write::Reply(id, reply) => Ok(Output::Bool(write_reply(conn, *id, reply)?)),
        Write::PostJob(job) => Ok(Output::Jobs(vec![jobs::post(conn, job)?])),
        Write::ClaimJob(id, who) => Ok(Output::Jobs(vec![jobs::claim(conn, *id, who)?])),
        Write::ClaimJobs(who, limit, can_run, with_plans) => {
            let claimed = jobs::claim_many(conn, who, *limit, can_run)?;
            claimed
                .into_iter()
                .map(|job| claimed_to_run(conn, who, job, *with_plans))
                .collect::<Result<_>>()
                .map(Output::Claimed)
        }
        Write::ReleaseJob(id, who, attempt, how) => Ok(Output::Jobs(vec![jobs::release(
            conn, *id, who, *attempt, *how,
        )?])),
        Write::RetryJob(id, by) => Ok(Output::Jobs(vec![jobs::retry(conn, *id, by)?])),
        Write::RegisterEntity(entity) => unit(jobs::register_entity(conn, entity)),
        Write::SendMessages(ms) => unit(messages::send(conn, ms)),
        Write::TakeMessages(topic, limit) => {
            messages::take(conn, topic, *limit).map(Output::Messages)
        }
        Write::RegisterWorker(w) => unit(messages::register(conn, w)),
        Write::Prune(..) | Write::Logs(_) => Err(Error::Backend(
            "SQLite prunes listed plans, and writes logs to files (a bug in the store)".into(),
        )),
        Write::WorkerHeartbeat(topic, running) => unit(messages::heartbeat(conn, topic, *running)),
        Write::RemoveWorker(topic) => unit(messages::remove(conn, topic)),
        Write::Acquire(plan, owner) => {
            let key = plan.to_string();
            if !plan_exists(conn, &key)? {
                return Err(Error::NotFound(key));
            }
            let holder: Option<String> = conn
                .prepare_cached("SELECT owner FROM locks WHERE plan_id = ?1")
                .and_then(|mut s| s.query_row([&key], |r| r.get(0)))
                .optional()
                .map_err(classify)?;
            match holder {
                Some(h) if h != *owner => Err(Error::Locked {
                    plan: *plan,
                    owner: h,
                }),
                Some(_) => Ok(Output::Unit),
                None => conn
                    .execute(
                        "INSERT INTO locks (plan_id, owner, acquired_at) VALUES (?1, ?2, ?3)",
                        params![key, owner, now_millis()],
                    )
                    .map(|_| Output::Unit)
                    .map_err(classify),
            }
        }
        Write::Release(plan, owner) => conn
            .execute(
                "DELETE FROM locks WHERE plan_id = ?1 AND (?2 IS NULL OR owner = ?2)",
                params![plan.to_string(), owner],
            )
            .map(|_| Output::Unit)
            .map_err(classify),
    }
}

/// Whether a plan with this id is stored.
pub(super) fn plan_exists(conn: &Connection, key: &str) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM plans WHERE id = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get::<_, i64>(0)).optional())
        .map(|r| r.is_some())
        .map_err(classify)
}

/// Takes the locks of up to `limit` waiting plans whose every Rust task is in `can_run`,
/// oldest first. The needs are judged here, once per distinct list (plans of one flow share
/// theirs), rather than by SQLite for every row; candidates are read a page at a time until
/// `limit` are taken or none are left.
fn claim(conn: &Connection, owner: &str, limit: u32, can_run: &[String]) -> Result<Output> {
    let mut pick = conn
        .prepare_cached(
            "SELECT p.id, p.needs FROM plans p
             WHERE p.state IN ('planned', 'running') AND p.id > ?1
               AND NOT EXISTS (SELECT 1 FROM locks l WHERE l.plan_id = p.id)
               AND NOT EXISTS (SELECT 1 FROM inhibitions i WHERE i.plan_id = p.id)
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.plan_id = p.id)
             ORDER BY p.id
             LIMIT ?2",
        )
        .map_err(classify)?;
    let mut lock = conn
        .prepare_cached("INSERT INTO locks (plan_id, owner, acquired_at) VALUES (?1, ?2, ?3)")
        .map_err(classify)?;
    let mut runnable: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let (mut taken, mut after) = (Vec::new(), String::new());
    let now = now_millis();
    while taken.len() < limit as usize {
        let page: Vec<(String, String)> = pick
            .query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(classify)?
            .collect::<std::result::Result<_, _>>()
            .map_err(classify)?;
        let Some((last, _)) = page.last() else { break };
        after = last.clone();
        for (id, needs) in page {
            let ok = match runnable.get(&needs) {
                Some(ok) => *ok,
                None => {
                    let listed: Vec<String> = serde_json::from_str(&needs)
                        .map_err(|e| Error::Corrupt(format!("plan {id}'s needs: {e}")))?;
                    let ok = listed.iter().all(|n| can_run.contains(n));
                    runnable.insert(needs, ok);
                    ok
                }
            };
            if ok && taken.len() < limit as usize {
                lock.execute(params![id, owner, now]).map_err(classify)?;
                taken.push(id);
            }
        }
    }
    Ok(Output::Plans(parse_ids(taken)?))
}

fn parse_ids(ids: Vec<String>) -> Result<Vec<PlanId>> {
    ids.iter()
        .map(|i| {
            i.parse()
                .map_err(|e| Error::Corrupt(format!("stored plan id `{i}`: {e}")))
        })
        .collect()
}

/// Moves due scheduled plans to `planned`; reports chained plans whose prerequisite failed.
fn promote_due(conn: &Connection, by: &str, now: Millis) -> Result<Vec<Due>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, after_plans FROM plans
             WHERE state = 'scheduled' AND (start_at IS NULL OR start_at <= ?1)
             ORDER BY id",
        )
        .map_err(classify)?;
    let rows: Vec<(String, String)> = stmt
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(classify)?
        .collect::<std::result::Result<_, _>>()
        .map_err(classify)?;
    let mut out = Vec::new();
    for (id, after) in rows {
        let plan: PlanId = id
            .parse()
            .map_err(|e| Error::Corrupt(format!("stored plan id `{id}`: {e}")))?;
        let after: Vec<PlanId> = serde_json::from_str(&after)
            .map_err(|e| Error::Corrupt(format!("stored prerequisites of {id}: {e}")))?;
        let found = after
            .iter()
            .map(|p| Ok((*p, prerequisite(conn, *p)?)))
            .collect::<Result<Vec<_>>>()?;
        match judge_prerequisites(found) {
            Readiness::Failed(prerequisite) => {
                out.push(Due::FailedDependency { plan, prerequisite })
            }
            Readiness::Waiting => {}
            Readiness::Ready => {
                for c in promotion(plan, now) {
                    change(conn, by, &c)?;
                }
                out.push(Due::Ready(plan));
            }
        }
    }
    Ok(out)
}

/// A prerequisite plan's state and result, if it exists.
fn prerequisite(conn: &Connection, plan: PlanId) -> Result<Option<(plan::State, Outcome)>> {
    let key = plan.to_string();
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM plans WHERE id = ?1")
        .and_then(|mut s| s.query_row([&key], |r| r.get(0)).optional())
        .map_err(classify)?;
    let Some(state) = state else { return Ok(None) };
    let state: plan::State = state.parse().map_err(Error::Corrupt)?;
    let mut stmt = conn
        .prepare_cached("SELECT state, warning IS NOT NULL FROM steps WHERE plan_id = ?1")
        .map_err(classify)?;
    let steps: Vec<(String, bool)> = stmt
        .query_map([&key], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(classify)?
        .collect::<std::result::Result<_, _>>()
        .map_err(classify)?;
    let steps = steps
        .into_iter()
        .map(|(s, w)| {
            s.parse::<step::State>()
                .map(|s| (s, w))
                .map_err(Error::Corrupt)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((state, Outcome::derive(steps))))
}

/// A job just claimed by `who`; `with_plans`, its plan created with the claim (started when
/// its flow has no limits) unless an earlier claim's is there, to resume.
fn claimed_to_run(
    conn: &Connection,
    who: &str,
    job: JobRecord,
    with_plans: bool,
) -> Result<ClaimedJob> {
    let plan_created = with_plans
        && match create(conn, &job.plan_to_run(who)) {
            Ok(()) => true,
            Err(Error::Exists(_)) => false,
            Err(e) => return Err(e),
        };
    let plan_started = plan_created && job.starts_with_claim();
    if plan_started {
        change(conn, who, &job.plan_start())?;
    }
    Ok(ClaimedJob {
        job,
        plan_created,
        plan_started,
    })
}

fn create(conn: &Connection, plan: &NewPlan) -> Result<()> {
    // Straight from the new plan: a flow of 100k steps is not copied on its way in.
    let key = plan.id.to_string();
    let flow = to_json(&plan.flow)?;
    let inputs = to_json(&plan.inputs)?;
    let after = to_json(&plan.after)?;
    let needs = to_json(&plan.flow.needs())?;
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO plans (id, flow_name, flow, inputs, state, created_at, phase, start_at, after_plans, needs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'null', ?7, ?8, ?9)",
        )
        .and_then(|mut s| {
            s.execute(params![
                key,
                plan.flow.name,
                flow,
                inputs,
                plan.state.as_str(),
                plan.created_at,
                plan.start_at,
                after,
                needs
            ])
        })
        .map_err(classify)?;
    drop(flow);
    if inserted == 0 {
        return Err(Error::Exists(plan.id));
    }
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO steps (plan_id, idx, name, state, attempt) VALUES (?1, ?2, ?3, ?4, 0)",
        )
        .map_err(classify)?;
    let pending = weft_model::step::State::Pending.as_str();
    for (index, s) in plan.flow.steps.iter().enumerate() {
        stmt.execute(params![key, index as u32, s.name, pending])
            .map_err(classify)?;
    }
    if let Some(owner) = &plan.owner {
        conn.execute(
            "INSERT INTO locks (plan_id, owner, acquired_at) VALUES (?1, ?2, ?3)",
            params![key, owner, plan.created_at],
        )
        .map_err(classify)?;
    }
    Ok(())
}

fn change(conn: &Connection, by: &str, c: &Change) -> Result<()> {
    match c {
        Change::Plan {
            plan, from, to, at, ..
        } => {
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
            if *to == plan::State::Stopped {
                jobs::complete_with_plan(conn, *plan, by, *at)?;
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
            let group = step.group.as_ref().map(to_json).transpose()?;
            let n = conn
                .prepare_cached(
                    "UPDATE steps SET state = ?4, attempt = ?5, started_at = ?6, ended_at = ?7,
                        output = ?8, failure = ?9, deadline = ?10, warning = ?11,
                        group_progress = ?12
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
                        failure,
                        step.deadline,
                        step.warning,
                        group
                    ])
                })
                .map_err(classify)?;
            if n == 0 {
                return Err(conflict(conn, *plan, Some(step.index), from.as_str()));
            }
        }
        Change::Group {
            plan,
            step,
            attempt,
            progress,
        } => {
            let progress = to_json(progress)?;
            let n = conn
                .prepare_cached(
                    "UPDATE steps SET group_progress = ?4
                     WHERE plan_id = ?1 AND idx = ?2 AND attempt = ?3 AND state = 'running'",
                )
                .and_then(|mut s| s.execute(params![plan.to_string(), step, attempt, progress]))
                .map_err(classify)?;
            if n == 0 {
                return Err(conflict(conn, *plan, Some(*step), "running"));
            }
        }
        Change::Bookkeeping { plan, bookkeeping } => {
            let bookkeeping = to_json(bookkeeping)?;
            conn.prepare_cached("UPDATE plans SET phase = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![plan.to_string(), bookkeeping]))
                .map_err(classify)?;
        }
        Change::Reply { message, reply, .. } => {
            write_reply(conn, *message, reply)?;
        }
        Change::Unlock { plan, owner } => {
            conn.prepare_cached("DELETE FROM locks WHERE plan_id = ?1 AND owner = ?2")
                .and_then(|mut s| s.execute(params![plan.to_string(), owner]))
                .map_err(classify)?;
        }
        Change::Release { plan, step } => super::slots::release(conn, *plan, *step)?,
    }
    if let Some(h) = c.transition() {
        let data = h.data_json();
        conn.prepare_cached(
            "INSERT INTO events (plan_id, step, from_state, to_state, at, data, actor) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut s| s.execute(params![c.plan().to_string(), h.step, h.from, h.to, h.at, data, by]))
        .map_err(classify)?;
    }
    Ok(())
}

/// Answers a pending message; false if it was answered (or withdrawn) already.
fn write_reply(conn: &Connection, id: i64, reply: &Reply) -> Result<bool> {
    let (status, reason) = match reply {
        Reply::Pending => ("pending", None),
        Reply::Done => ("done", None),
        Reply::Refused(why) => ("refused", Some(why.as_str())),
    };
    let n = conn
        .prepare_cached(
            "UPDATE mailbox SET status = ?2, reason = ?3 WHERE id = ?1 AND status = 'pending'",
        )
        .and_then(|mut s| s.execute(params![id, status, reason]))
        .map_err(classify)?;
    Ok(n == 1)
}

/// The stopped plans that ended before `before` and that no waiting plan names as a
/// prerequisite, oldest first, at most `limit`: what pruning deletes.
pub(super) fn prunable(conn: &Connection, before: Millis, limit: u32) -> Result<Vec<PlanId>> {
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT p.id FROM plans p
             WHERE p.state = 'stopped' AND p.ended_at < ?1
               AND NOT EXISTS (SELECT 1 FROM plans q
                               WHERE q.state IN ('scheduled', 'pending')
                                 AND instr(q.after_plans, p.id) > 0)
             ORDER BY p.ended_at LIMIT ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![before, limit], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(classify)?;
    parse_ids(ids)
}

/// Deletes those of `ids` that are still prunable, with everything of theirs in the store's
/// file (their logs went first): the ones deleted.
fn prune(conn: &Connection, before: Millis, ids: &[PlanId]) -> Result<Vec<PlanId>> {
    let mut gone = Vec::with_capacity(ids.len());
    for id in ids {
        let key = id.to_string();
        let still: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM plans p
                 WHERE p.id = ?1 AND p.state = 'stopped' AND p.ended_at < ?2
                   AND NOT EXISTS (SELECT 1 FROM plans q
                                   WHERE q.state IN ('scheduled', 'pending')
                                     AND instr(q.after_plans, p.id) > 0))",
            )
            .and_then(|mut s| s.query_row(params![key, before], |r| r.get(0)))
            .map_err(classify)?;
        if !still {
            continue;
        }
        for sql in [
            "DELETE FROM plan_keys WHERE plan_id = ?1",
            "DELETE FROM events WHERE plan_id = ?1",
            "DELETE FROM mailbox WHERE plan_id = ?1",
            "DELETE FROM steps WHERE plan_id = ?1",
            "DELETE FROM inhibitions WHERE plan_id = ?1",
            "DELETE FROM locks WHERE plan_id = ?1",
            "DELETE FROM plans WHERE id = ?1",
        ] {
            conn.prepare_cached(sql)
                .and_then(|mut s| s.execute([&key]))
                .map_err(classify)?;
        }
        gone.push(*id);
    }
    Ok(gone)
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
