//! The job board on PostgreSQL: the writer's job writes (each inside the writer's transaction,
//! rows locked `FOR UPDATE`; batch claims one statement with `SKIP LOCKED`) and the reads.
//! Decisions come from [`weft_model::job`]; this module reads and writes rows.

use super::Conn;
use crate::codec::{json, parse_state, to_json};
use crate::jobs::{priority_of, priority_rank};
use crate::{ClaimedJob, Entity, Error, JobFilter, JobRecord, JobTransition, NewJob, Result};
use tokio_postgres::Row;
use weft_model::job::{self, BoardError, JobId, Move, Release, State};
use weft_model::{now_millis, Millis, PlanId};

fn record(r: &Row) -> Result<JobRecord> {
    let id: JobId = r
        .get::<_, &str>("id")
        .parse()
        .map_err(|e| Error::Corrupt(format!("stored job id: {e}")))?;
    let plan: PlanId = r
        .get::<_, &str>("plan_id")
        .parse()
        .map_err(|e| Error::Corrupt(format!("stored plan id of job {id}: {e}")))?;
    Ok(JobRecord {
        id,
        name: r.get("name"),
        flow: json(r.get("flow"), "job flow")?,
        inputs: json(r.get("inputs"), "job inputs")?,
        details: json(r.get("details"), "job details")?,
        priority: priority_of(i64::from(r.get::<_, i32>("priority")))?,
        state: parse_state(r.get("state"))?,
        owner: r.get("owner"),
        attempts: u32::try_from(r.get::<_, i32>("attempts")).unwrap_or(0),
        max_attempts: u32::try_from(r.get::<_, i32>("max_attempts")).unwrap_or(0),
        plan,
        needs: r.get("needs"),
        created_at: r.get("created_at"),
        modified_at: r.get("modified_at"),
        note: r.get("note"),
    })
}

fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn not_found(id: JobId) -> Error {
    Error::Job(BoardError::NotFound(format!("job {id} does not exist")))
}

/// A job, its row locked for the rest of the transaction.
async fn locked(conn: &mut Conn, id: JobId) -> Result<JobRecord> {
    let row = conn
        .query_opt(
            "SELECT * FROM jobs WHERE id = $1 FOR UPDATE",
            &[&id.to_string()],
        )
        .await?
        .ok_or_else(|| not_found(id))?;
    record(&row)
}

const HISTORY: &str = "INSERT INTO job_events (job_id, at, by, from_state, to_state, attempt, note)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

async fn history(conn: &mut Conn, job: &JobRecord, from: Option<State>, by: &str) -> Result<()> {
    conn.execute(
        HISTORY,
        &[
            &job.id.to_string(),
            &job.modified_at,
            &by,
            &from.map(State::as_str),
            &job.state.as_str(),
            &int(job.attempts),
            &job.note,
        ],
    )
    .await?;
    Ok(())
}

async fn save(conn: &mut Conn, job: &JobRecord, from: State, by: &str) -> Result<()> {
    conn.execute(
        "UPDATE jobs SET state = $2, owner = $3, attempts = $4, plan_id = $5, modified_at = $6,
            note = $7
         WHERE id = $1",
        &[
            &job.id.to_string(),
            &job.state.as_str(),
            &job.owner,
            &int(job.attempts),
            &job.plan.to_string(),
            &job.modified_at,
            &job.note,
        ],
    )
    .await?;
    history(conn, job, Some(from), by).await
}

fn moved(mut job: JobRecord, mv: Move, owner: Option<String>, at: Millis) -> JobRecord {
    job.state = mv.to;
    job.owner = owner;
    job.note = mv.note;
    job.modified_at = at;
    job
}

pub(super) async fn post(conn: &mut Conn, new: &NewJob) -> Result<JobRecord> {
    let job = new.record(now_millis());
    let n = conn
        .execute(
            "INSERT INTO jobs (id, name, flow, inputs, details, priority, state, owner, attempts,
                max_attempts, plan_id, needs, created_at, modified_at, note)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 0, $8, $9, $10, $11, $11, NULL)
             ON CONFLICT (id) DO NOTHING",
            &[
                &job.id.to_string(),
                &job.name,
                &to_json(&job.flow)?,
                &to_json(&job.inputs)?,
                &to_json(&job.details)?,
                &(priority_rank(job.priority) as i32),
                &job.state.as_str(),
                &int(job.max_attempts),
                &job.plan.to_string(),
                &job.needs,
                &job.created_at,
            ],
        )
        .await?;
    if n == 0 {
        return Err(Error::Job(BoardError::JobFailure(format!(
            "a job with id {} exists already",
            job.id
        ))));
    }
    history(conn, &job, None, "post").await?;
    Ok(job)
}

pub(super) async fn claim(conn: &mut Conn, id: JobId, who: &str) -> Result<JobRecord> {
    job::check_who(who)?;
    let job = locked(conn, id).await?;
    let mv = job::claim(job.standing(), who)?;
    let from = job.state;
    let mut job = moved(job, mv, Some(who.to_string()), now_millis());
    job.attempts += 1;
    save(conn, &job, from, who).await?;
    Ok(job)
}

/// Claims up to `limit` jobs in one statement: rows another claimer holds are skipped, and
/// every claim's history row is written by the same statement. With `$5`, each job's plan is
/// created with its claim — the job's flow and inputs copied row to row, its steps `pending`
/// (one per element of the flow's `steps`, as `NewPlan::records` makes them), its lock held by
/// the claimer — unless it exists already (an earlier claim's, to resume); `plan_created`
/// says which. A plan whose flow has no limits (the key is left out of the flow's JSON then)
/// is created started: `running`, with the history row of its start (as the director writes
/// it: `planned → running`, why `started`, by the claimer); `plan_started` says which.
///
/// Shaped for a board whose statistics are stale (one just filled): every flow's JSON is
/// parsed once (`n`, materialized), whether a plan exists is an index probe on `plans` in the
/// claim's own snapshot, and no two CTEs are joined — the planner expects one row from each
/// and a nested loop over two 450-row CTEs cost half the statement. (`plan_started` scans the
/// plans created `planned` for each row: none, unless flows have limits; then it costs what
/// the join did.) A plan that another
/// writer created after that snapshot fails the insert, and with it the whole claim, rather
/// than being taken for this claim's.
const CLAIM_MANY: &str = "WITH c AS (
        SELECT id FROM jobs
        WHERE state = 'unclaimed' AND needs <@ $3::text[]
        ORDER BY priority, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED),
    u AS (
        UPDATE jobs j SET state = 'claimed', owner = $1, attempts = j.attempts + 1,
            modified_at = $4, note = NULL
        FROM c WHERE j.id = c.id
        RETURNING j.*,
            $5 AND NOT EXISTS (SELECT 1 FROM plans WHERE plans.id = j.plan_id) AS plan_created),
    h AS (
        INSERT INTO job_events (job_id, at, by, from_state, to_state, attempt)
        SELECT id, $4, $1, 'unclaimed', 'claimed', attempts FROM u),
    n AS MATERIALIZED (
        SELECT plan_id, flow, inputs, needs,
            f->>'name' AS flow_name, f->'limits' IS NULL AS started, f->'steps' AS steps
        FROM (SELECT plan_id, flow, inputs, needs, flow::json AS f
              FROM u WHERE plan_created OFFSET 0) x),
    p AS (
        INSERT INTO plans (id, flow_name, flow, inputs, state, created_at, started_at, phase,
            start_at, after_plans, needs)
        SELECT plan_id, flow_name, flow, inputs,
            CASE WHEN started THEN 'running' ELSE 'planned' END, $4,
            CASE WHEN started THEN $4 END, 'null', NULL, '[]', needs
        FROM n),
    e AS (
        INSERT INTO events (plan_id, step, from_state, to_state, at, data, actor)
        SELECT plan_id, NULL, 'planned', 'running', $4, '{\"why\":\"started\"}', $1
        FROM n WHERE started),
    s AS (
        INSERT INTO steps (plan_id, idx, name, state, attempt)
        SELECT n.plan_id, (e.n - 1)::int4, e.step->>'name', 'pending', 0
        FROM n, json_array_elements(n.steps) WITH ORDINALITY AS e(step, n)),
    l AS (
        INSERT INTO locks (plan_id, owner, acquired_at) SELECT plan_id, $1, $4 FROM n)
    SELECT u.*,
        plan_created AND plan_id NOT IN (SELECT plan_id FROM n WHERE NOT started) AS plan_started
    FROM u";

pub(super) async fn claim_many(
    conn: &mut Conn,
    who: &str,
    limit: u32,
    can_run: &[String],
    with_plans: bool,
) -> Result<Vec<ClaimedJob>> {
    job::check_who(who)?;
    // Walk the board's index in claim order and stop at `limit`. Statistics of a board just
    // filled (not yet analyzed), and the capability filter's fixed small selectivity, make the
    // planner expect a handful of rows and prefer fetching every unclaimed job and sorting
    // them: a claim then cost a scan of the whole board (14 ms of 20 at 20,000 jobs).
    conn.client
        .batch_execute("SET LOCAL enable_sort = off")
        .await
        .map_err(super::classify)?;
    let rows = conn
        .query(
            CLAIM_MANY,
            &[
                &who,
                &i64::from(limit),
                &can_run,
                &now_millis(),
                &with_plans,
            ],
        )
        .await;
    conn.client
        .batch_execute("RESET enable_sort")
        .await
        .map_err(super::classify)?;
    let mut jobs = rows?
        .iter()
        .map(|r| {
            Ok(ClaimedJob {
                job: record(r)?,
                plan_created: r.get("plan_created"),
                plan_started: r.get("plan_started"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    jobs.sort_by_key(|c| crate::jobs::claim_order(&c.job));
    Ok(jobs)
}

pub(super) async fn release(
    conn: &mut Conn,
    id: JobId,
    who: &str,
    attempt: Option<u32>,
    how: Release,
) -> Result<JobRecord> {
    job::check_who(who)?;
    let job = locked(conn, id).await?;
    let mv = job::release(job.standing(), who, attempt, how)?;
    let from = job.state;
    let owner = (mv.to == State::Complete).then(|| who.to_string());
    let job = moved(job, mv, owner, now_millis());
    save(conn, &job, from, who).await?;
    Ok(job)
}

pub(super) async fn retry(conn: &mut Conn, id: JobId, by: &str) -> Result<JobRecord> {
    let job = locked(conn, id).await?;
    let mv = job::retry(job.standing())?;
    let from = job.state;
    // The old plan, no longer the job's, must not be claimed by a node as a plain plan.
    conn.execute(
        "INSERT INTO inhibitions (plan_id, at)
         SELECT id, $2 FROM plans WHERE id = $1 AND state != 'stopped'
         ON CONFLICT DO NOTHING",
        &[&job.plan.to_string(), &now_millis()],
    )
    .await?;
    let mut job = moved(job, mv, None, now_millis());
    job.attempts = 0;
    job.plan = PlanId::new();
    save(conn, &job, from, by).await?;
    Ok(job)
}

/// The claims of an owner that is gone: each job back on the board, or to the trash once it
/// has had its attempts. Returns how many went back on the board, and how many were lost.
pub(super) async fn lose_claims(conn: &mut Conn, owner: &str, by: &str) -> Result<(usize, usize)> {
    let rows = conn
        .query(
            "SELECT * FROM jobs WHERE owner = $1 AND state = 'claimed' FOR UPDATE",
            &[&owner],
        )
        .await?;
    let at = now_millis();
    let (mut back, lost) = (0, rows.len());
    for row in rows {
        let job = record(&row)?;
        let mv = job::lose(job.standing(), &format!("its owner {owner} was lost"));
        back += usize::from(mv.to == State::Unclaimed);
        let job = moved(job, mv, None, at);
        save(conn, &job, State::Claimed, by).await?;
    }
    Ok((back, lost))
}

pub(super) async fn register_entity(conn: &mut Conn, entity: &Entity) -> Result<()> {
    crate::jobs::check_entity(entity)?;
    conn.execute(
        "INSERT INTO entities (kind, name, metadata, registered_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (kind, name) DO UPDATE SET metadata = excluded.metadata,
            registered_at = excluded.registered_at",
        &[
            &entity.kind,
            &entity.name,
            &to_json(&entity.metadata)?,
            &now_millis(),
        ],
    )
    .await?;
    Ok(())
}

// Reads.

pub(super) async fn get(conn: &mut Conn, id: JobId) -> Result<JobRecord> {
    let row = conn
        .query_opt("SELECT * FROM jobs WHERE id = $1", &[&id.to_string()])
        .await?
        .ok_or_else(|| not_found(id))?;
    record(&row)
}

pub(super) async fn list(conn: &mut Conn, filter: &JobFilter) -> Result<Vec<JobRecord>> {
    let limit = filter.limit.map(i64::from);
    if let Some(owner) = &filter.owner {
        let rows = conn
            .query(
                "SELECT * FROM jobs WHERE owner = $1 AND state = 'claimed'
                 ORDER BY priority, id LIMIT $2",
                &[owner, &limit],
            )
            .await?;
        return rows.iter().map(record).collect();
    }
    // One query per listing, each matching a partial index in claim order: no sort.
    let sql = if filter.trashed {
        "SELECT * FROM jobs WHERE state = 'trashed' ORDER BY priority, id LIMIT $1"
    } else if filter.only_unclaimed {
        "SELECT * FROM jobs WHERE state = 'unclaimed' ORDER BY priority, id LIMIT $1"
    } else {
        "SELECT * FROM jobs WHERE state IN ('unclaimed', 'claimed') ORDER BY priority, id LIMIT $1"
    };
    let rows = conn.query(sql, &[&limit]).await?;
    rows.iter().map(record).collect()
}

pub(super) async fn count(conn: &mut Conn, filter: &JobFilter) -> Result<u64> {
    let states: Vec<&str> = filter.states().to_vec();
    let row = conn
        .query_opt(
            "SELECT count(*) FROM jobs WHERE state = ANY($1) AND ($2::text IS NULL OR owner = $2)",
            &[&states, &filter.owner],
        )
        .await?
        .ok_or_else(|| Error::Backend("count returned no row".into()))?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

pub(super) async fn resolve(conn: &mut Conn, text: &str) -> Result<JobId> {
    crate::jobs::check_prefix(text)?;
    let rows = conn
        .query(
            "SELECT id FROM jobs WHERE id >= $1 AND id < $1 || 'g' LIMIT 2",
            &[&text.to_ascii_lowercase()],
        )
        .await?;
    crate::jobs::resolved(text, rows.iter().map(|r| r.get(0)).collect())
}

pub(super) async fn transitions(conn: &mut Conn, id: JobId) -> Result<Vec<JobTransition>> {
    get(conn, id).await?;
    let rows = conn
        .query(
            "SELECT at, by, from_state, to_state, attempt, note FROM job_events
             WHERE job_id = $1 ORDER BY id",
            &[&id.to_string()],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(JobTransition {
                at: r.get(0),
                by: r.get(1),
                from: r.get::<_, Option<&str>>(2).map(parse_state).transpose()?,
                to: parse_state(r.get(3))?,
                attempt: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
                note: r.get(5),
            })
        })
        .collect()
}

pub(super) async fn entities(conn: &mut Conn) -> Result<Vec<Entity>> {
    let rows = conn
        .query(
            "SELECT kind, name, metadata FROM entities ORDER BY kind, name",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Entity {
                kind: r.get(0),
                name: r.get(1),
                metadata: json(r.get(2), "entity metadata")?,
            })
        })
        .collect()
}
