//! The embedded SQLite store: one file in WAL mode.
//!
//! One writer thread owns the only write connection. It blocks for the first request, drains
//! whatever else is queued, applies them all in one transaction (each in its own savepoint, so
//! one caller's conflict does not fail another's), commits once, and only then answers every
//! caller: group commit. Reads use their own connections on the blocking pool.

mod jobs;
mod logs;
mod messages;
mod schedules;
mod schema;
mod slots;
mod wake;
mod writer;

use crate::codec::{json, parse_state, MAX_READERS};
use crate::queue::Queue;
use crate::{
    BoxFuture, Change, ClaimedJob, Due, Entity, Error, HistoryEntry, Instruction, JobFilter,
    JobRecord, JobTransition, Message, NewJob, NewPlan, NodeRecord, PlanFilter, PlanRecord,
    PlanSnapshot, PlanSummary, Reply, Result, StepRecord, Store, WireMessage, WorkerRecord,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use weft_model::job::{JobId, Release};
use weft_model::plan::{self, Outcome};
use weft_model::Millis;
use weft_model::{step, PlanId};
use writer::{plan_exists, Request, Write};

pub use schema::VERSION as SCHEMA_VERSION;

/// How long a connection waits for a lock held by another process before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite-backed store.
#[derive(Clone)]
pub struct SqliteStore {
    path: Arc<PathBuf>,
    /// The file's inode when opened: a different one means the file was replaced.
    inode: u64,
    writer: mpsc::Sender<Request>,
    /// Where tasks' output goes: files beside the database.
    logs: logs::LogDir,
    readers: Arc<Mutex<Vec<Connection>>>,
    reading: Arc<tokio::sync::Semaphore>,
    wakes: wake::Wakes,
    /// Hints from other processes' commits, once a node asked for them.
    hints: Arc<Mutex<Option<tokio::sync::watch::Receiver<crate::Hints>>>>,
}

/// Maps a SQLite error to the store's, telling corrupt, locked and missing files apart.
pub(crate) fn classify(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(NotADatabase) => {
            Error::Corrupt("the file is not a SQLite database (or is corrupt)".into())
        }
        Some(DatabaseCorrupt) => Error::Corrupt("the database file is corrupt".into()),
        Some(DatabaseBusy) | Some(DatabaseLocked) => Error::Unavailable(format!(
            "the database is locked by another process (waited {}s)",
            BUSY_TIMEOUT.as_secs()
        )),
        Some(CannotOpen) => Error::Unavailable(format!("cannot open the database: {e}")),
        Some(ReadOnly) => Error::Unavailable(format!("the database is read-only: {e}")),
        Some(DiskFull) => Error::Unavailable("the disk is full".into()),
        _ => Error::Backend(e.to_string()),
    }
}

fn configure(conn: &Connection, write: bool) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    if write {
        // Switching a new database to WAL needs it to itself; SQLite answers "busy" at once
        // rather than waiting, so wait here (another process may be opening it right now).
        let started = std::time::Instant::now();
        let mode: String = loop {
            match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
                Ok(mode) => break mode,
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(rusqlite::ErrorCode::DatabaseBusy)
                    ) && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(classify(e)),
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Unavailable(format!(
                "could not put the database in WAL mode (it is in `{mode}` mode)"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(classify)?;
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(classify)?;
        if sync != 2 {
            return Err(Error::Unavailable(format!(
                "could not set synchronous = FULL (it reads back as {sync})"
            )));
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(Error::Unavailable(format!(
                    "cannot open {}: directory {} does not exist",
                    path.display(),
                    dir.display()
                )));
            }
        }
        let with_path = |e: Error| match e {
            Error::Corrupt(m) => Error::Corrupt(format!("{}: {m}", path.display())),
            Error::Unavailable(m) => Error::Unavailable(format!("{}: {m}", path.display())),
            other => other,
        };
        if path.exists() && !path.is_file() {
            return Err(Error::Corrupt(format!(
                "{} is not a weft database (not a regular file)",
                path.display()
            )));
        }
        // A new database is readable by its owner only (it holds inputs and outputs, secrets
        // among them); SQLite gives its -wal and -shm files the database's mode.
        {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::Unavailable(format!(
                        "cannot create {}: {e}",
                        path.display()
                    )))
                }
            }
        }
        let mut conn = Connection::open(path)
            .map_err(classify)
            .map_err(with_path)?;
        schema::check_identity(&conn).map_err(with_path)?;
        configure(&conn, true).map_err(with_path)?;
        let logs = logs::LogDir::beside(path);
        import_logs(&conn, &logs).map_err(with_path)?;
        schema::migrate(&mut conn).map_err(with_path)?;
        let (tx, rx) = mpsc::channel();
        let wakes = wake::Wakes::beside(path);
        std::thread::Builder::new()
            .name("weft-sqlite-writer".into())
            .spawn({
                let wakes = wakes.clone();
                move || writer::run(conn, rx, wakes)
            })
            .map_err(|e| Error::Backend(format!("cannot start the writer thread: {e}")))?;
        let inode = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path)
                .map(|m| m.ino())
                .map_err(|e| Error::Unavailable(format!("{}: {e}", path.display())))?
        };
        Ok(SqliteStore {
            path: Arc::new(path.to_path_buf()),
            inode,
            writer: tx,
            logs,
            readers: Arc::new(Mutex::new(Vec::new())),
            reading: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            wakes,
            hints: Arc::default(),
        })
    }

    /// Runs `f` with a read connection on the blocking pool.
    fn read<T, F>(&self, f: F) -> BoxFuture<Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let this = self.clone();
        Box::pin(async move {
            let _turn = this
                .reading
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::Closed)?;
            tokio::task::spawn_blocking(move || {
                let conn = this.take_reader()?;
                let out = f(&conn);
                if let Ok(mut pool) = this.readers.lock() {
                    pool.push(conn);
                }
                out
            })
            .await
            .map_err(|e| Error::Backend(format!("read task failed: {e}")))?
        })
    }

    fn take_reader(&self) -> Result<Connection> {
        if let Some(conn) = self.readers.lock().ok().and_then(|mut p| p.pop()) {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &*self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(classify)?;
        configure(&conn, false)?;
        Ok(conn)
    }
}

/// Runs `f` on the blocking pool: files are read and written there.
fn blocking<T, F>(f: F) -> BoxFuture<Result<T>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    Box::pin(async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Backend(format!("file task failed: {e}")))?
    })
}

/// Moves what schema versions up to 15 kept of tasks' output in the database (`step_logs`)
/// to files, before the migration drops the table; a thousand rows at a time.
fn import_logs(conn: &Connection, logs: &logs::LogDir) -> Result<()> {
    let table: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'step_logs'",
            [],
            |r| r.get(0),
        )
        .map_err(classify)?;
    if !table {
        return Ok(());
    }
    let mut after = 0;
    loop {
        let rows: Vec<(i64, crate::LogChunk)> = conn
            .prepare(
                "SELECT id, plan_id, step, attempt, task, action, stream, pos, at, data
                 FROM step_logs WHERE id > ?1 ORDER BY id LIMIT 1000",
            )
            .and_then(|mut s| {
                s.query_map([after], |r| {
                    let plan: String = r.get(1)?;
                    let plan = plan.parse().map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            1,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })?;
                    let chunk = crate::LogChunk {
                        key: crate::LogKey {
                            plan,
                            step: r.get(2)?,
                            attempt: r.get(3)?,
                            task: r.get(4)?,
                            action: r.get(5)?,
                            stream: r.get(6)?,
                        },
                        offset: r.get::<_, i64>(7)?.max(0) as u64,
                        at: r.get(8)?,
                        data: r.get(9)?,
                    };
                    Ok((r.get(0)?, chunk))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(classify)?;
        let Some((last, _)) = rows.last() else {
            return Ok(());
        };
        after = *last;
        logs.import(&rows)?;
    }
}

fn load(conn: &Connection, id: PlanId) -> Result<PlanSnapshot> {
    let key = id.to_string();
    // Cached statements: reading a plan is the API's and recovery's hot path, and parsing the
    // SQL each time cost more than running it.
    let plan = conn
        .prepare_cached(
            "SELECT flow, inputs, state, created_at, started_at, ended_at, phase, start_at, after_plans
             FROM plans WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([&key], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, String>(8)?,
                ))
            })
        })
        .optional()
        .map_err(classify)?
        .ok_or_else(|| Error::NotFound(key.clone()))?;
    let plan = PlanRecord {
        id,
        flow: json(&plan.0, "flow")?,
        inputs: json(&plan.1, "inputs")?,
        state: parse_state::<plan::State>(&plan.2)?,
        created_at: plan.3,
        started_at: plan.4,
        ended_at: plan.5,
        bookkeeping: json(&plan.6, "phase")?,
        start_at: plan.7,
        after: json(&plan.8, "prerequisites")?,
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, name, state, attempt, started_at, ended_at, output, failure, deadline, warning,
                    group_progress
             FROM steps WHERE plan_id = ?1 ORDER BY idx",
        )
        .map_err(classify)?;
    let rows = stmt
        .query_map([&key], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<i64>>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, Option<String>>(10)?,
            ))
        })
        .map_err(classify)?;
    let mut steps = Vec::new();
    for row in rows {
        let (
            index,
            name,
            state,
            attempt,
            started_at,
            ended_at,
            output,
            failure,
            deadline,
            warning,
            group,
        ) = row.map_err(classify)?;
        steps.push(StepRecord {
            index,
            name,
            state: parse_state::<step::State>(&state)?,
            attempt,
            started_at,
            ended_at,
            output: output.map(|o| json(&o, "output")).transpose()?,
            failure: failure.map(|f| json(&f, "failure")).transpose()?,
            deadline,
            warning,
            group: group.map(|g| json(&g, "group progress")).transpose()?,
        });
    }
    Ok(PlanSnapshot { plan, steps })
}

impl Queue for SqliteStore {
    fn enqueue(&self, request: Request) -> bool {
        self.writer.send(request).is_ok()
    }
}

impl Store for SqliteStore {
    fn create_plan(&self, plan: NewPlan) -> BoxFuture<Result<()>> {
        self.write(Write::Create(Box::new(plan)))
    }

    fn create_plan_once(
        &self,
        plan: NewPlan,
        key: String,
        window: Millis,
    ) -> BoxFuture<Result<PlanId>> {
        self.write_once(plan, key, window)
    }

    fn apply(&self, by: &str, changes: Vec<Change>) -> BoxFuture<Result<()>> {
        if changes.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        self.write(Write::Apply(by.to_string(), changes))
    }

    fn load_plan(&self, id: PlanId) -> BoxFuture<Result<PlanSnapshot>> {
        self.read(move |conn| load(conn, id))
    }

    fn load_plan_and_owner(&self, id: PlanId) -> BoxFuture<Result<(PlanSnapshot, Option<String>)>> {
        self.read(move |conn| {
            let snap = load(conn, id)?;
            let owner = conn
                .prepare_cached("SELECT owner FROM locks WHERE plan_id = ?1")
                .and_then(|mut s| s.query_row([id.to_string()], |r| r.get(0)))
                .optional()
                .map_err(classify)?;
            Ok((snap, owner))
        })
    }

    fn count_plans(&self) -> BoxFuture<Result<Vec<(plan::State, u64)>>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT state, count(*) FROM plans GROUP BY state ORDER BY state")
                .map_err(classify)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(classify)?;
            rows.map(|r| {
                let (state, n) = r.map_err(classify)?;
                Ok((parse_state::<plan::State>(&state)?, n.max(0) as u64))
            })
            .collect()
        })
    }

    fn list_plans(&self, filter: PlanFilter) -> BoxFuture<Result<Vec<PlanSummary>>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT p.id, p.flow_name, p.state, p.created_at, p.ended_at,
                            (SELECT group_concat(DISTINCT s.state) FROM steps s WHERE s.plan_id = p.id),
                            (SELECT count(*) FROM steps s WHERE s.plan_id = p.id),
                            (SELECT count(*) FROM steps s WHERE s.plan_id = p.id AND s.warning IS NOT NULL),
                            (SELECT owner FROM locks l WHERE l.plan_id = p.id),
                            p.start_at
                     FROM plans p
                     WHERE (?1 IS NULL OR p.state = ?1)
                       AND (?3 IS NULL OR p.flow_name = ?3)
                       AND (?4 IS NULL OR instr(p.flow_name, ?4) > 0 OR substr(p.id, 1, length(?4)) = ?4)
                       AND (?5 IS NULL OR p.id < ?5)
                     ORDER BY p.id DESC
                     LIMIT ?2",
                )
                .map_err(classify)?;
            let state = filter.state.map(|s| s.to_string());
            let limit = filter.limit.map(i64::from).unwrap_or(-1);
            let before = filter.before.map(|b| b.to_string());
            let rows = stmt
                .query_map(
                    rusqlite::params![state, limit, filter.flow, filter.search, before],
                    |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, u32>(6)?,
                        r.get::<_, u32>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, Option<i64>>(9)?,
                    ))
                })
                .map_err(classify)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, flow, state, created_at, ended_at, states, steps, warned, owner, start_at) =
                    row.map_err(classify)?;
                let mut states: Vec<(step::State, bool)> = states
                    .unwrap_or_default()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| parse_state(s).map(|s| (s, false)))
                    .collect::<Result<_>>()?;
                if warned > 0 {
                    states.push((step::State::Success, true));
                }
                out.push(PlanSummary {
                    id: id.parse().map_err(|e| Error::Corrupt(format!("stored plan id: {e}")))?,
                    flow,
                    state: parse_state(&state)?,
                    // With distinct states, "all success" means the only state is success.
                    result: Outcome::derive(states),
                    created_at,
                    ended_at,
                    steps,
                    owner,
                    start_at,
                });
            }
            Ok(out)
        })
    }

    fn history(&self, id: PlanId) -> BoxFuture<Result<Vec<HistoryEntry>>> {
        self.read(move |conn| {
            let key = id.to_string();
            if !plan_exists(conn, &key)? {
                return Err(Error::NotFound(key));
            }
            let mut stmt = conn
                .prepare_cached(
                    "SELECT at, step, from_state, to_state, data, actor FROM events WHERE plan_id = ?1 ORDER BY id",
                )
                .map_err(classify)?;
            let rows = stmt
                .query_map([&key], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<u32>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                })
                .map_err(classify)?;
            let mut out = Vec::new();
            for row in rows {
                let (at, step, from, to, data, by) = row.map_err(classify)?;
                out.push(HistoryEntry {
                    at,
                    step,
                    from,
                    to,
                    by,
                    data: data.map(|d| json(&d, "event data")).transpose()?,
                });
            }
            Ok(out)
        })
    }

    fn resolve_id(&self, text: String) -> BoxFuture<Result<PlanId>> {
        self.read(move |conn| {
            if text.is_empty() || !text.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                return Err(Error::NotFound(text));
            }
            let mut stmt = conn
                .prepare_cached("SELECT id FROM plans WHERE id >= ?1 AND id < ?1 || 'g' LIMIT 2")
                .map_err(classify)?;
            let ids: Vec<String> = stmt
                .query_map([text.to_ascii_lowercase()], |r| r.get(0))
                .map_err(classify)?
                .collect::<std::result::Result<_, _>>()
                .map_err(classify)?;
            match ids.as_slice() {
                [one] => one
                    .parse()
                    .map_err(|e| Error::Corrupt(format!("stored plan id: {e}"))),
                [] => Err(Error::NotFound(text)),
                _ => Err(Error::Ambiguous(text)),
            }
        })
    }

    fn acquire_lock(&self, plan: PlanId, owner: String) -> BoxFuture<Result<()>> {
        self.write(Write::Acquire(plan, owner))
    }

    fn release_lock(&self, plan: PlanId, owner: Option<String>) -> BoxFuture<Result<()>> {
        self.write(Write::Release(plan, owner))
    }

    fn known_capabilities(&self) -> BoxFuture<Result<Vec<String>>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT capability FROM capabilities ORDER BY capability")
                .map_err(classify)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(classify)?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(classify)
        })
    }

    fn lock_holders(&self) -> BoxFuture<Result<Vec<String>>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT DISTINCT owner FROM locks ORDER BY owner")
                .map_err(classify)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(classify)?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(classify)
        })
    }

    fn lock_owner(&self, plan: PlanId) -> BoxFuture<Result<Option<String>>> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT owner FROM locks WHERE plan_id = ?1")
                .and_then(|mut s| s.query_row([plan.to_string()], |r| r.get(0)))
                .optional()
                .map_err(classify)
        })
    }

    fn prune_plans(&self, before: Millis, limit: u32) -> BoxFuture<Result<Vec<PlanId>>> {
        // Their logs go first: a crash in between leaves plans to prune again, never logs
        // without a plan.
        let this = self.clone();
        Box::pin(async move {
            let ids = this
                .read(move |conn| writer::prunable(conn, before, limit))
                .await?;
            if ids.is_empty() {
                return Ok(ids);
            }
            let (logs, gone) = (this.logs.clone(), ids.clone());
            blocking(move || logs.forget(&gone)).await?;
            this.write_plans(Write::PruneListed(before, ids)).await
        })
    }

    fn put_schedule(&self, schedule: crate::ScheduleRecord) -> BoxFuture<Result<()>> {
        self.write(Write::PutSchedule(Box::new(schedule)))
    }

    fn schedules(&self) -> BoxFuture<Result<Vec<crate::ScheduleRecord>>> {
        self.read(schedules::list)
    }

    fn remove_schedule(&self, name: String) -> BoxFuture<Result<()>> {
        self.write(Write::RemoveSchedule(name))
    }

    fn fire_schedules(
        &self,
        now: Millis,
        trigger: Option<String>,
    ) -> BoxFuture<Result<Vec<(String, PlanId)>>> {
        self.write_fire(now, trigger)
    }

    fn acquire_slots(&self, request: crate::SlotRequest) -> BoxFuture<Result<crate::SlotAnswer>> {
        self.write_slots(request)
    }

    fn slots_of(&self, plan: PlanId) -> BoxFuture<Result<Vec<crate::SlotRow>>> {
        self.read(move |conn| slots::of(conn, plan))
    }

    fn put_queue(&self, queue: crate::QueueRecord) -> BoxFuture<Result<()>> {
        self.write(Write::PutQueue(Box::new(queue)))
    }

    fn queues(&self) -> BoxFuture<Result<Vec<crate::QueueRecord>>> {
        self.read(slots::queues)
    }

    fn remove_queue(&self, name: String) -> BoxFuture<Result<()>> {
        self.write(Write::RemoveQueue(name))
    }

    fn inhibit(&self, plan: PlanId) -> BoxFuture<Result<()>> {
        self.write(Write::Inhibit(plan))
    }

    fn is_inhibited(&self, plan: PlanId) -> BoxFuture<Result<bool>> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT 1 FROM inhibitions WHERE plan_id = ?1")
                .and_then(|mut s| s.query_row([plan.to_string()], |r| r.get::<_, i64>(0)))
                .optional()
                .map(|r| r.is_some())
                .map_err(classify)
        })
    }

    fn register_node(&self, node: NodeRecord) -> BoxFuture<Result<()>> {
        self.write(Write::RegisterNode(node))
    }

    fn heartbeat(&self, node: String, at: Millis) -> BoxFuture<Result<()>> {
        self.write(Write::Heartbeat(node, at))
    }

    fn nodes(&self) -> BoxFuture<Result<Vec<NodeRecord>>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id, name, started_at, heartbeat_at, report, process, capabilities FROM nodes ORDER BY name, started_at")
                .map_err(classify)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(NodeRecord {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        started_at: r.get(2)?,
                        heartbeat_at: r.get(3)?,
                        report: r.get::<_, Option<String>>(4)?.and_then(|t| serde_json::from_str(&t).ok()),
                        process: r.get(5)?,
                        capabilities: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                    })
                })
                .map_err(classify)?;
            rows.collect::<std::result::Result<_, _>>().map_err(classify)
        })
    }

    fn invalidate_node(&self, node: String) -> BoxFuture<Result<Vec<PlanId>>> {
        self.write_plans(Write::InvalidateNode(node))
    }

    fn release_locks(&self, owner: String) -> BoxFuture<Result<Vec<PlanId>>> {
        self.write_plans(Write::ReleaseLocks(owner))
    }

    fn set_node_report(&self, node: String, report: serde_json::Value) -> BoxFuture<Result<()>> {
        self.write(Write::NodeReport(node, report.to_string()))
    }

    fn checkpoint(&self) -> BoxFuture<Result<()>> {
        self.write(Write::Checkpoint)
    }

    fn backup(&self, path: PathBuf) -> BoxFuture<Result<()>> {
        if path.exists() {
            return Box::pin(std::future::ready(Err(Error::Unsupported(format!(
                "{} exists already; a backup goes to a new file",
                path.display()
            )))));
        }
        let (logs, to) = (self.logs.clone(), path.clone());
        let store = self.write(Write::Backup(path));
        // The database first: its copy holds every plan whose logs are copied after it.
        Box::pin(async move {
            store.await?;
            blocking(move || logs.copy_beside(&to)).await
        })
    }

    fn check(&self) -> BoxFuture<Result<()>> {
        let path = self.path.clone();
        let inode = self.inode;
        let read = self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(classify));
        Box::pin(async move {
            use std::os::unix::fs::MetadataExt;
            match std::fs::metadata(&*path) {
                Ok(m) if m.ino() == inode => {}
                Ok(_) => {
                    return Err(Error::Unavailable(format!(
                        "{}: the database file was replaced",
                        path.display()
                    )))
                }
                Err(e) => {
                    return Err(Error::Unavailable(format!(
                        "{}: the database file is gone: {e}",
                        path.display()
                    )))
                }
            }
            read.await
        })
    }

    fn hints(&self) -> Option<tokio::sync::watch::Receiver<crate::Hints>> {
        let mut hints = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        if hints.is_none() {
            match self.wakes.listen() {
                Ok(rx) => *hints = Some(rx),
                Err(e) => {
                    tracing::warn!(
                        "no wake-ups beside {}: {e}; polling instead",
                        self.path.display()
                    );
                    return None;
                }
            }
        }
        hints.clone()
    }

    fn claim_plans(
        &self,
        owner: String,
        limit: u32,
        can_run: Vec<String>,
    ) -> BoxFuture<Result<Vec<PlanId>>> {
        self.write_plans(Write::Claim(owner, limit, can_run))
    }

    fn promote_due(&self, by: &str, now: Millis) -> BoxFuture<Result<Vec<Due>>> {
        let done = self.submit(Write::PromoteDue(by.to_string(), now));
        Box::pin(async move { done.await?.into_due() })
    }

    fn post(&self, plan: PlanId, instruction: Instruction) -> BoxFuture<Result<i64>> {
        let done = self.submit(Write::Post(plan, instruction));
        Box::pin(async move { done.await?.into_id() })
    }

    fn inbox(&self, owner: String) -> BoxFuture<Result<Vec<Message>>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT m.id, m.plan_id, m.command, m.created_at FROM mailbox m
                     JOIN locks l ON l.plan_id = m.plan_id
                     WHERE m.status = 'pending' AND l.owner = ?1
                     ORDER BY m.id",
                )
                .map_err(classify)?;
            let rows: Vec<(i64, String, String, i64)> = stmt
                .query_map([owner], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(classify)?
                .collect::<std::result::Result<_, _>>()
                .map_err(classify)?;
            rows.into_iter()
                .map(|(id, plan, command, created_at)| {
                    Ok(Message {
                        id,
                        plan: plan
                            .parse()
                            .map_err(|e| Error::Corrupt(format!("stored plan id: {e}")))?,
                        instruction: json(&command, "message")?,
                        created_at,
                    })
                })
                .collect()
        })
    }

    fn reply(&self, id: i64, reply: Reply) -> BoxFuture<Result<bool>> {
        let done = self.submit(Write::Reply(id, reply));
        Box::pin(async move { done.await?.into_bool() })
    }

    fn reply_of(&self, id: i64) -> BoxFuture<Result<Reply>> {
        self.read(move |conn| {
            let row: Option<(String, Option<String>)> = conn
                .prepare_cached("SELECT status, reason FROM mailbox WHERE id = ?1")
                .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))))
                .optional()
                .map_err(classify)?;
            match row {
                None => Err(Error::NotFound(format!("message {id}"))),
                Some((status, reason)) => match status.as_str() {
                    "pending" => Ok(Reply::Pending),
                    "done" => Ok(Reply::Done),
                    "refused" => Ok(Reply::Refused(reason.unwrap_or_default())),
                    other => Err(Error::Corrupt(format!("message {id} has status `{other}`"))),
                },
            }
        })
    }

    fn post_job(&self, job: NewJob) -> BoxFuture<Result<JobRecord>> {
        self.write_job(Write::PostJob(Box::new(job)))
    }

    fn job(&self, id: JobId) -> BoxFuture<Result<JobRecord>> {
        self.read(move |conn| jobs::get(conn, id))
    }

    fn resolve_job(&self, text: String) -> BoxFuture<Result<JobId>> {
        self.read(move |conn| jobs::resolve(conn, &text))
    }

    fn list_jobs(&self, filter: JobFilter) -> BoxFuture<Result<Vec<JobRecord>>> {
        self.read(move |conn| jobs::list(conn, &filter))
    }

    fn count_jobs(&self, filter: JobFilter) -> BoxFuture<Result<u64>> {
        self.read(move |conn| jobs::count(conn, &filter))
    }

    fn claim_job(&self, id: JobId, who: String) -> BoxFuture<Result<JobRecord>> {
        self.write_job(Write::ClaimJob(id, who))
    }

    fn claim_jobs(
        &self,
        who: String,
        limit: u32,
        can_run: Vec<String>,
    ) -> BoxFuture<Result<Vec<JobRecord>>> {
        let claimed = self.write_claimed(Write::ClaimJobs(who, limit, can_run, false));
        Box::pin(async move { Ok(claimed.await?.into_iter().map(|c| c.job).collect()) })
    }

    fn claim_jobs_to_run(
        &self,
        who: String,
        limit: u32,
        can_run: Vec<String>,
    ) -> BoxFuture<Result<Vec<ClaimedJob>>> {
        self.write_claimed(Write::ClaimJobs(who, limit, can_run, true))
    }

    fn release_job(
        &self,
        id: JobId,
        who: String,
        attempt: Option<u32>,
        how: Release,
    ) -> BoxFuture<Result<JobRecord>> {
        self.write_job(Write::ReleaseJob(id, who, attempt, how))
    }

    fn retry_job(&self, id: JobId, by: String) -> BoxFuture<Result<JobRecord>> {
        self.write_job(Write::RetryJob(id, by))
    }

    fn job_history(&self, id: JobId) -> BoxFuture<Result<Vec<JobTransition>>> {
        self.read(move |conn| jobs::transitions(conn, id))
    }

    fn register_entity(&self, entity: Entity) -> BoxFuture<Result<()>> {
        self.write(Write::RegisterEntity(entity))
    }

    fn entities(&self) -> BoxFuture<Result<Vec<Entity>>> {
        self.read(jobs::entities)
    }

    fn send_messages(&self, messages: Vec<WireMessage>) -> BoxFuture<Result<()>> {
        self.write(Write::SendMessages(messages))
    }

    fn take_messages(&self, topic: String, limit: u32) -> BoxFuture<Result<Vec<WireMessage>>> {
        self.write_messages(Write::TakeMessages(topic, limit))
    }

    fn register_worker(&self, worker: WorkerRecord) -> BoxFuture<Result<()>> {
        self.write(Write::RegisterWorker(worker))
    }

    fn worker_heartbeat(&self, topic: String, running: u32) -> BoxFuture<Result<()>> {
        self.write(Write::WorkerHeartbeat(topic, running))
    }

    fn workers(&self) -> BoxFuture<Result<Vec<WorkerRecord>>> {
        self.read(messages::all)
    }

    fn write_logs(&self, write: crate::LogWrite) -> BoxFuture<Result<()>> {
        let logs = self.logs.clone();
        blocking(move || logs.write(&write))
    }

    fn read_logs(&self, query: crate::LogQuery) -> BoxFuture<Result<Vec<crate::LogRow>>> {
        let logs = self.logs.clone();
        blocking(move || logs.read(&query))
    }

    fn remove_worker(&self, topic: String) -> BoxFuture<Result<()>> {
        self.write(Write::RemoveWorker(topic))
    }
}
