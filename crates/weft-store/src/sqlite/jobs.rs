//! The job board on SQLite: the writer's job writes (each inside the writer's transaction)
//! and the reads. Decisions come from [`weft_model::job`]; this module reads and writes rows.

use super::classify;
use crate::codec::{json, parse_state, to_json};
use crate::jobs::{priority_of, priority_rank};
use crate::{Entity, Error, JobFilter, JobRecord, JobTransition, NewJob, Result};
use rusqlite::{params, Connection, Row};
use weft_model::job::{self, BoardError, JobId, Move, Release, State};
use weft_model::{now_millis, Millis, PlanId};

const COLUMNS: &str = "id, name, flow, inputs, details, priority, state, owner, attempts,
    max_attempts, plan_id, needs, created_at, modified_at, note";

fn record(r: &Row<'_>) -> Result<JobRecord> {
    let text = |i: usize| r.get::<_, String>(i).map_err(classify);
    let id: JobId = text(0)?
        .parse()
        .map_err(|e| Error::Corrupt(format!("stored job id: {e}")))?;
    let plan: PlanId = text(10)?
        .parse()
        .map_err(|e| Error::Corrupt(format!("stored plan id of job {id}: {e}")))?;
    Ok(JobRecord {
        id,
        name: text(1)?,
        flow: json(&text(2)?, "job flow")?,
        inputs: json(&text(3)?, "job inputs")?,
        details: json(&text(4)?, "job details")?,
        priority: priority_of(r.get(5).map_err(classify)?)?,
        state: parse_state(&text(6)?)?,
        owner: r.get(7).map_err(classify)?,
        attempts: r.get(8).map_err(classify)?,
        max_attempts: r.get(9).map_err(classify)?,
        plan,
        needs: json(&text(11)?, "job needs")?,
        created_at: r.get(12).map_err(classify)?,
        modified_at: r.get(13).map_err(classify)?,
        note: r.get(14).map_err(classify)?,
    })
}

fn not_found(id: JobId) -> Error {
    Error::Job(BoardError::NotFound(format!("job {id} does not exist")))
}

/// A job by id, if it was ever posted.
pub(super) fn load(conn: &Connection, id: JobId) -> Result<Option<JobRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))
        .map_err(classify)?;
    let mut rows = stmt.query([id.to_string()]).map_err(classify)?;
    match rows.next().map_err(classify)? {
        Some(r) => record(r).map(Some),
        None => Ok(None),
    }
}

fn history(
    conn: &Connection,
    job: &JobRecord,
    from: Option<State>,
    by: &str,
    at: Millis,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO job_events (job_id, at, by, from_state, to_state, attempt, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            job.id.to_string(),
            at,
            by,
            from.map(State::as_str),
            job.state.as_str(),
            job.attempts,
            job.note
        ])
    })
    .map_err(classify)?;
    Ok(())
}

/// Writes a job's new standing and its history entry.
fn save(conn: &Connection, job: &JobRecord, from: State, by: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET state = ?2, owner = ?3, attempts = ?4, plan_id = ?5, modified_at = ?6,
            note = ?7
         WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            job.id.to_string(),
            job.state.as_str(),
            job.owner,
            job.attempts,
            job.plan.to_string(),
            job.modified_at,
            job.note
        ])
    })
    .map_err(classify)?;
    history(conn, job, Some(from), by, job.modified_at)
}

/// Applies a decided move to a loaded job: its state, owner and note.
fn moved(mut job: JobRecord, mv: Move, owner: Option<String>, at: Millis) -> JobRecord {
    job.state = mv.to;
    job.owner = owner;
    job.note = mv.note;
    job.modified_at = at;
    job
}

pub(super) fn post(conn: &Connection, new: &NewJob) -> Result<JobRecord> {
    let job = new.record(now_millis());
    let (flow, inputs) = (to_json(&job.flow)?, to_json(&job.inputs)?);
    let (details, needs) = (to_json(&job.details)?, to_json(&job.needs)?);
    conn.prepare_cached(&format!(
        "INSERT INTO jobs ({COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            job.id.to_string(),
            job.name,
            flow,
            inputs,
            details,
            priority_rank(job.priority),
            job.state.as_str(),
            job.owner,
            job.attempts,
            job.max_attempts,
            job.plan.to_string(),
            needs,
            job.created_at,
            job.modified_at,
            job.note
        ])
    })
    .map_err(|e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => Error::Job(BoardError::JobFailure(
            format!("a job with id {} exists already", job.id),
        )),
        _ => classify(e),
    })?;
    history(conn, &job, None, "post", job.created_at)?;
    Ok(job)
}

fn take(conn: &Connection, job: JobRecord, who: &str, at: Millis) -> Result<JobRecord> {
    let mv = job::claim(job.standing(), who)?;
    let from = job.state;
    let mut job = moved(job, mv, Some(who.to_string()), at);
    job.attempts += 1;
    save(conn, &job, from, who)?;
    Ok(job)
}

pub(super) fn claim(conn: &Connection, id: JobId, who: &str) -> Result<JobRecord> {
    job::check_who(who)?;
    let job = load(conn, id)?.ok_or_else(|| not_found(id))?;
    take(conn, job, who, now_millis())
}

/// Claims up to `limit` unclaimed jobs, in claim order, whose needs `can_run` covers. Their
/// plans are the writer's to create (`writer::claimed_to_run`): this module writes jobs only.
pub(super) fn claim_many(
    conn: &Connection,
    who: &str,
    limit: u32,
    can_run: &[String],
) -> Result<Vec<JobRecord>> {
    job::check_who(who)?;
    let at = now_millis();
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'unclaimed' ORDER BY priority, id"
        ))
        .map_err(classify)?;
    let mut rows = stmt.query([]).map_err(classify)?;
    let mut found = Vec::new();
    while found.len() < limit as usize {
        let Some(r) = rows.next().map_err(classify)? else {
            break;
        };
        let job = record(r)?;
        if job.needs.iter().all(|n| can_run.contains(n)) {
            found.push(job);
        }
    }
    drop(rows);
    found
        .into_iter()
        .map(|job| take(conn, job, who, at))
        .collect()
}

pub(super) fn release(
    conn: &Connection,
    id: JobId,
    who: &str,
    attempt: Option<u32>,
    how: Release,
) -> Result<JobRecord> {
    job::check_who(who)?;
    let job = load(conn, id)?.ok_or_else(|| not_found(id))?;
    let mv = job::release(job.standing(), who, attempt, how)?;
    let from = job.state;
    // A consumed job remembers who consumed it; otherwise the claim is gone.
    let owner = (mv.to == State::Complete).then(|| who.to_string());
    let job = moved(job, mv, owner, now_millis());
    save(conn, &job, from, who)?;
    Ok(job)
}

pub(super) fn retry(conn: &Connection, id: JobId, by: &str) -> Result<JobRecord> {
    let job = load(conn, id)?.ok_or_else(|| not_found(id))?;
    let mv = job::retry(job.standing())?;
    let from = job.state;
    // The old plan, no longer the job's, must not be claimed by a node as a plain plan.
    conn.execute(
        "INSERT OR IGNORE INTO inhibitions (plan_id, at)
         SELECT id, ?2 FROM plans WHERE id = ?1 AND state != 'stopped'",
        params![job.plan.to_string(), now_millis()],
    )
    .map_err(classify)?;
    let mut job = moved(job, mv, None, now_millis());
    job.attempts = 0;
    job.plan = PlanId::new();
    save(conn, &job, from, by)?;
    Ok(job)
}

/// The claims of an owner that is gone: each job back on the board, or to the trash once it
/// has had its attempts.
pub(super) fn lose_claims(conn: &Connection, owner: &str, by: &str) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE owner = ?1 AND state = 'claimed'"
        ))
        .map_err(classify)?;
    let jobs = stmt
        .query([owner])
        .map_err(classify)?
        .mapped(|r| Ok(record(r)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(classify)?
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let at = now_millis();
    for job in jobs {
        let mv = job::lose(job.standing(), &format!("its owner {owner} was lost"));
        let job = moved(job, mv, None, at);
        save(conn, &job, State::Claimed, by)?;
    }
    Ok(())
}

/// A plan stopped: the claimed job it runs is complete, in the same commit.
pub(super) fn complete_with_plan(
    conn: &Connection,
    plan: PlanId,
    by: &str,
    at: Millis,
) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE plan_id = ?1 AND state = 'claimed'"
        ))
        .map_err(classify)?;
    let mut rows = stmt.query([plan.to_string()]).map_err(classify)?;
    let Some(row) = rows.next().map_err(classify)? else {
        return Ok(());
    };
    let job = record(row)?;
    drop(rows);
    let owner = job.owner.clone();
    let job = moved(
        job,
        Move {
            to: State::Complete,
            note: Some(format!("its plan {plan} stopped")),
        },
        owner,
        at,
    );
    save(conn, &job, State::Claimed, by)
}

pub(super) fn register_entity(conn: &Connection, entity: &Entity) -> Result<()> {
    crate::jobs::check_entity(entity)?;
    conn.execute(
        "INSERT INTO entities (kind, name, metadata, registered_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (kind, name) DO UPDATE SET metadata = excluded.metadata,
            registered_at = excluded.registered_at",
        params![
            entity.kind,
            entity.name,
            to_json(&entity.metadata)?,
            now_millis()
        ],
    )
    .map_err(classify)?;
    Ok(())
}

// Reads.

pub(super) fn get(conn: &Connection, id: JobId) -> Result<JobRecord> {
    load(conn, id)?.ok_or_else(|| not_found(id))
}

/// The `WHERE` clause of a listing and its parameters.
fn listing(filter: &JobFilter) -> (String, Vec<String>) {
    let states = filter.states();
    let marks = vec!["?"; states.len()].join(", ");
    let mut params: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    let mut clause = format!("state IN ({marks})");
    if let Some(owner) = &filter.owner {
        clause.push_str(" AND owner = ?");
        params.push(owner.clone());
    }
    (clause, params)
}

pub(super) fn list(conn: &Connection, filter: &JobFilter) -> Result<Vec<JobRecord>> {
    let (clause, params) = listing(filter);
    let limit = filter.limit.map(i64::from).unwrap_or(-1);
    let sql =
        format!("SELECT {COLUMNS} FROM jobs WHERE {clause} ORDER BY priority, id LIMIT {limit}");
    let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params.iter()), |r| Ok(record(r)))
        .map_err(classify)?;
    rows.map(|r| r.map_err(classify).and_then(|j| j)).collect()
}

pub(super) fn count(conn: &Connection, filter: &JobFilter) -> Result<u64> {
    let (clause, params) = listing(filter);
    let sql = format!("SELECT count(*) FROM jobs WHERE {clause}");
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row(rusqlite::params_from_iter(params.iter()), |r| r.get(0)))
        .map_err(classify)
}

pub(super) fn resolve(conn: &Connection, text: &str) -> Result<JobId> {
    crate::jobs::check_prefix(text)?;
    let mut stmt = conn
        .prepare_cached("SELECT id FROM jobs WHERE id >= ?1 AND id < ?1 || 'g' LIMIT 2")
        .map_err(classify)?;
    let ids: Vec<String> = stmt
        .query_map([text.to_ascii_lowercase()], |r| r.get(0))
        .map_err(classify)?
        .collect::<std::result::Result<_, _>>()
        .map_err(classify)?;
    crate::jobs::resolved(text, ids)
}

pub(super) fn transitions(conn: &Connection, id: JobId) -> Result<Vec<JobTransition>> {
    if load(conn, id)?.is_none() {
        return Err(not_found(id));
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT at, by, from_state, to_state, attempt, note FROM job_events
             WHERE job_id = ?1 ORDER BY id",
        )
        .map_err(classify)?;
    let rows = stmt
        .query_map([id.to_string()], |r| {
            Ok((
                r.get::<_, Millis>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .map_err(classify)?;
    rows.map(|r| {
        let (at, by, from, to, attempt, note) = r.map_err(classify)?;
        Ok(JobTransition {
            at,
            by,
            from: from.as_deref().map(parse_state).transpose()?,
            to: parse_state(&to)?,
            attempt,
            note,
        })
    })
    .collect()
}

pub(super) fn entities(conn: &Connection) -> Result<Vec<Entity>> {
    let mut stmt = conn
        .prepare_cached("SELECT kind, name, metadata FROM entities ORDER BY kind, name")
        .map_err(classify)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(classify)?;
    rows.map(|r| {
        let (kind, name, metadata) = r.map_err(classify)?;
        Ok(Entity {
            kind,
            name,
            metadata: json(&metadata, "entity metadata")?,
        })
    })
    .collect()
}
