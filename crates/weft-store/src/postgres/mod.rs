//! The PostgreSQL store: one database shared by every node.
//!
//! PostgreSQL is the distributed engine; weft adds no coordination of its own. Claims take
//! plans with `FOR UPDATE SKIP LOCKED`, execution locks are rows with a primary key, leases are
//! judged by the database's clock, and `LISTEN/NOTIFY` wakes nodes when plans are submitted or
//! messages posted.
//!
//! One writer task per process owns a connection and group-commits (batch claims of jobs have
//! a writer and connection of their own): it takes every request queued, applies them in one
//! transaction (each in a savepoint, its statements pipelined) and commits once. Reads use a small pool. A connection that breaks (the server restarted) is
//! dropped and a new one made on the next request; requests in between fail with
//! [`Error::Unavailable`], which a node treats as its store failing.

mod jobs;
mod logs;
mod messages;
mod schedules;
mod schema;
mod slots;
mod tls;
mod writer;

use crate::codec::{json, parse_state, MAX_READERS};
use crate::queue::Queue;
use crate::{
    BoxFuture, Change, Due, Error, Hints, HistoryEntry, Instruction, Message, NewPlan, NodeRecord,
    PlanFilter, PlanRecord, PlanSnapshot, PlanSummary, Reply, Result, StepRecord, Store,
};
use crate::{
    ClaimedJob, Entity, JobFilter, JobRecord, JobTransition, NewJob, WireMessage, WorkerRecord,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Statement};
use weft_model::job::{JobId, Release};
use weft_model::plan::{self, Outcome};
use weft_model::{step, Millis, PlanId};
use writer::{Request, Write};

pub use schema::VERSION as SCHEMA_VERSION;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel weft notifies on; the payload says what changed.
const CHANNEL: &str = "weft";

/// The PostgreSQL-backed store.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Target,
    /// `user@host:port/db`, for messages (never the password).
    shown: String,
    writer: mpsc::UnboundedSender<Request>,
    /// A writer of its own for batch claims of jobs, so that the board's claims and the
    /// plans' transitions commit side by side (see [`Queue::enqueue`]).
    claims: mpsc::UnboundedSender<Request>,
    readers: Mutex<Vec<Conn>>,
    reading: tokio::sync::Semaphore,
    /// Started by the first [`Store::hints`] call: one-shot commands never listen.
    hints: Mutex<Option<watch::Receiver<Hints>>>,
}

/// How long a prepared statement's plan is kept before it is prepared (and planned) again.
const REPLAN_AFTER: Duration = Duration::from_secs(1);

/// A connection with its prepared statements.
pub(crate) struct Conn {
    pub client: Client,
    statements: HashMap<&'static str, (Statement, std::time::Instant)>,
}

impl Conn {
    async fn connect(config: &Target, shown: &str) -> Result<Conn> {
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect())
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "cannot reach PostgreSQL at {shown}: no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| connect_error(e, shown))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL connection ended: {e}");
            }
        });
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// The prepared statement for `sql`, prepared on first use and again once it is
    /// [`REPLAN_AFTER`] old: PostgreSQL keeps a statement's plan, and a plan made while a
    /// table was small (seq scans, hash joins) keeps scanning the table whole after it grew.
    pub(crate) async fn prepare(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some((s, at)) = self.statements.get(sql) {
            if at.elapsed() < REPLAN_AFTER {
                return Ok(s.clone());
            }
        }
        let s = self.client.prepare(sql).await.map_err(classify)?;
        self.statements
            .insert(sql, (s.clone(), std::time::Instant::now()));
        Ok(s)
    }

    pub(crate) async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let s = self.prepare(sql).await?;
        self.client.query(&s, params).await.map_err(classify)
    }

    pub(crate) async fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>> {
        let s = self.prepare(sql).await?;
        self.client.query_opt(&s, params).await.map_err(classify)
    }

    pub(crate) async fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64> {
        let s = self.prepare(sql).await?;
        self.client.execute(&s, params).await.map_err(classify)
    }
}

/// Maps a PostgreSQL error to the store's: a server that cannot be reached or used is
/// [`Error::Unavailable`]; the rest are backend errors.
pub(crate) fn classify(e: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let msg = db.message();
        if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            return Error::Unavailable(format!("PostgreSQL refused: {msg} (permission denied)"));
        }
        if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || code.code().starts_with("08")
            || code.code().starts_with("53")
            || code.code().starts_with("57P")
        {
            return Error::Unavailable(format!("PostgreSQL is not available: {msg}"));
        }
        return Error::Backend(format!("PostgreSQL: {msg} ({})", code.code()));
    }
    if e.is_closed() {
        return Error::Unavailable("the connection to PostgreSQL was lost".into());
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if io {
        return Error::Unavailable(format!("the connection to PostgreSQL failed: {e}"));
    }
    Error::Backend(format!("PostgreSQL: {e}"))
}

/// A failed connect, said plainly: unreachable, refused credentials, no such database.
fn connect_error(e: tokio_postgres::Error, shown: &str) -> Error {
    use tokio_postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let why = match db.code() {
            c if *c == SqlState::INVALID_PASSWORD => "the password was refused".to_string(),
            c if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                format!("the user was refused: {}", db.message())
            }
            c if *c == SqlState::INVALID_CATALOG_NAME => db.message().to_string(),
            _ => db.message().to_string(),
        };
        return Error::Unavailable(format!("cannot use PostgreSQL at {shown}: {why}"));
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    Error::Unavailable(format!("cannot reach PostgreSQL at {shown}: {text}"))
}

/// Where to connect, and how: the parsed URL and its TLS.
#[derive(Clone)]
pub(crate) struct Target {
    pg: Config,
    tls: tls::Tls,
}

impl Target {
    /// A new connection.
    pub(crate) async fn connect(
        &self,
    ) -> std::result::Result<
        (
            Client,
            tokio_postgres::Connection<tokio_postgres::Socket, tls::Stream>,
        ),
        tokio_postgres::Error,
    > {
        self.pg.connect(self.tls.clone()).await
    }
}

/// Parses a `postgres://` URL (with libpq's `sslmode` and `sslrootcert`); a malformed one is
/// [`Error::BadUrl`].
fn parse_url(url: &str) -> Result<(Target, String)> {
    let (url, tls) = tls::from_url(url)?;
    let mut config: Config = url
        .parse()
        .map_err(|e| Error::BadUrl(format!("malformed PostgreSQL URL: {e}")))?;
    if config.get_hosts().is_empty() {
        return Err(Error::BadUrl(
            "malformed PostgreSQL URL: it names no host (postgres://USER:PASSWORD@HOST:PORT/DB)"
                .into(),
        ));
    }
    if config.get_dbname().is_none() {
        return Err(Error::BadUrl(
            "malformed PostgreSQL URL: it names no database (postgres://USER:PASSWORD@HOST:PORT/DB)"
                .into(),
        ));
    }
    config.application_name("weft");
    config.connect_timeout(CONNECT_TIMEOUT);
    config.ssl_mode(if tls.enabled() {
        tokio_postgres::config::SslMode::Require
    } else {
        tokio_postgres::config::SslMode::Disable
    });
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let shown = format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    );
    Ok((Target { pg: config, tls }, shown))
}

/// Creates database `name` on the server `admin_url` points at (for benchmarks and tests);
/// returns the URL of the new database.
pub async fn create_database(admin_url: &str, name: &str) -> Result<String> {
    on_server(admin_url, name, "CREATE DATABASE {}").await?;
    let base = admin_url
        .split('?')
        .next()
        .and_then(|u| u.rsplit_once('/'))
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    Ok(format!("{base}/{name}"))
}

/// Drops the database `name` on the server `admin_url` names, ending its sessions first (a
/// throwaway database's, as [`create_database`] made it; PostgreSQL 13 or later).
pub async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    on_server(admin_url, name, "DROP DATABASE IF EXISTS {} WITH (FORCE)").await
}

/// Runs `statement` with database `name` in place of its `{}`, on a connection of its own to
/// the server `admin_url` names. The name must need no quoting: letters, digits, `_`.
async fn on_server(admin_url: &str, name: &str, statement: &str) -> Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::BadUrl(format!(
            "`{name}` is not a plain database name"
        )));
    }
    let (config, shown) = parse_url(admin_url)?;
    let conn = Conn::connect(&config, &shown).await?;
    conn.client
        .batch_execute(&statement.replace("{}", name))
        .await
        .map_err(classify)
}

impl PostgresStore {
    /// Connects to the database `url` names and migrates it.
    pub async fn open(url: &str) -> Result<Self> {
        let (config, shown) = parse_url(url)?;
        let mut first = Conn::connect(&config, &shown).await?;
        schema::migrate(&mut first.client)
            .await
            .map_err(|e| match e {
                Error::Unavailable(m) => Error::Unavailable(format!(
                    "cannot create weft's tables in {shown}: {m}; nothing was created"
                )),
                other => other,
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(config.clone(), shown.clone(), Some(first), rx));
        // Connected on its first claim: one-shot commands never make it.
        let (claims, claims_rx) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(config.clone(), shown.clone(), None, claims_rx));
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                config,
                shown,
                writer: tx,
                claims,
                readers: Mutex::new(Vec::new()),
                reading: tokio::sync::Semaphore::new(MAX_READERS),
                hints: Mutex::new(None),
            }),
        })
    }

    /// Runs `f` with a pooled read connection; a connection that failed is not put back.
    fn read<T, F>(&self, f: F) -> BoxFuture<Result<T>>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> ConnFuture<'c, Result<T>> + Send + 'static,
    {
        let this = self.clone();
        Box::pin(async move {
            let _turn = this
                .inner
                .reading
                .acquire()
                .await
                .map_err(|_| Error::Closed)?;
            let pooled = this.inner.readers.lock().ok().and_then(|mut p| p.pop());
            let mut conn = match pooled {
                Some(c) if !c.client.is_closed() => c,
                _ => Conn::connect(&this.inner.config, &this.inner.shown).await?,
            };
            let out = f(&mut conn).await;
            let broken = matches!(out, Err(Error::Unavailable(_))) || conn.client.is_closed();
            if !broken {
                if let Ok(mut pool) = this.inner.readers.lock() {
                    pool.push(conn);
                }
            }
            out
        })
    }
}

/// A boxed future borrowing a connection.
type ConnFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

fn parse_id(text: &str) -> Result<PlanId> {
    text.parse()
        .map_err(|e| Error::Corrupt(format!("stored plan id `{text}`: {e}")))
}

fn u32_of(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

async fn load(conn: &mut Conn, id: PlanId) -> Result<PlanSnapshot> {
    let key = id.to_string();
    let row = conn
        .query_opt(
            "SELECT flow, inputs, state, created_at, started_at, ended_at, phase, start_at, after_plans
             FROM plans WHERE id = $1",
            &[&key],
        )
        .await?
        .ok_or_else(|| Error::NotFound(key.clone()))?;
    let plan = PlanRecord {
        id,
        flow: json(row.get::<_, &str>(0), "flow")?,
        inputs: json(row.get::<_, &str>(1), "inputs")?,
        state: parse_state(row.get::<_, &str>(2))?,
        created_at: row.get(3),
        started_at: row.get(4),
        ended_at: row.get(5),
        bookkeeping: json(row.get::<_, &str>(6), "phase")?,
        start_at: row.get(7),
        after: json(row.get::<_, &str>(8), "prerequisites")?,
    };
    let rows = conn
        .query(
            "SELECT idx, name, state, attempt, started_at, ended_at, output, failure, deadline,
                    warning, group_progress
             FROM steps WHERE plan_id = $1 ORDER BY idx",
            &[&key],
        )
        .await?;
    let mut steps = Vec::with_capacity(rows.len());
    for r in rows {
        steps.push(StepRecord {
            index: u32_of(r.get(0)),
            name: r.get(1),
            state: parse_state::<step::State>(r.get::<_, &str>(2))?,
            attempt: u32_of(r.get(3)),
            started_at: r.get(4),
            ended_at: r.get(5),
            output: r
                .get::<_, Option<&str>>(6)
                .map(|o| json(o, "output"))
                .transpose()?,
            failure: r
                .get::<_, Option<&str>>(7)
                .map(|f| json(f, "failure"))
                .transpose()?,
            deadline: r.get(8),
            warning: r.get(9),
            group: r
                .get::<_, Option<&str>>(10)
                .map(|g| json(g, "group progress"))
                .transpose()?,
        });
    }
    Ok(PlanSnapshot { plan, steps })
}

impl Queue for PostgresStore {
    /// Batch claims of jobs go to their own writer and connection: a run of them took about a
    /// third of the one writer's time, and on their own they commit while the plans' writer
    /// does. They cannot deadlock with it: a batch claim takes only unclaimed jobs, skips the
    /// locked ones and waits for no row, and no other write is on that connection.
    fn enqueue(&self, request: Request) -> bool {
        let writer = match request.write {
            Write::ClaimJobs(..) => &self.inner.claims,
            _ => &self.inner.writer,
        };
        writer.send(request).is_ok()
    }
}

impl Store for PostgresStore {
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
        self.read(move |conn| Box::pin(load(conn, id)))
    }

    fn count_plans(&self) -> BoxFuture<Result<Vec<(plan::State, u64)>>> {
        self.read(|conn| {
            Box::pin(async move {
                let rows = conn
                    .query(
                        "SELECT state, count(*) FROM plans GROUP BY state ORDER BY state",
                        &[],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        let state: String = r.get(0);
                        let n: i64 = r.get(1);
                        Ok((parse_state::<plan::State>(&state)?, n.max(0) as u64))
                    })
                    .collect()
            })
        })
    }

    fn list_plans(&self, filter: PlanFilter) -> BoxFuture<Result<Vec<PlanSummary>>> {
        self.read(move |conn| {
            Box::pin(async move {
                let state = filter.state.map(|s| s.to_string());
                let limit = filter.limit.map(i64::from);
                let before = filter.before.map(|b| b.to_string());
                let rows = conn
                    .query(
                        "SELECT p.id, p.flow_name, p.state, p.created_at, p.ended_at,
                                (SELECT string_agg(DISTINCT s.state, ',') FROM steps s WHERE s.plan_id = p.id),
                                (SELECT count(*) FROM steps s WHERE s.plan_id = p.id),
                                (SELECT count(*) FROM steps s WHERE s.plan_id = p.id AND s.warning IS NOT NULL),
                                (SELECT owner FROM locks l WHERE l.plan_id = p.id),
                                p.start_at
                         FROM plans p
                         WHERE ($1::text IS NULL OR p.state = $1)
                           AND ($3::text IS NULL OR p.flow_name = $3)
                           AND ($4::text IS NULL OR strpos(p.flow_name, $4) > 0 OR left(p.id, length($4)) = $4)
                           AND ($5::text IS NULL OR p.id < $5)
                         ORDER BY p.id DESC
                         LIMIT $2",
                        &[&state, &limit, &filter.flow, &filter.search, &before],
                    )
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let states: Option<&str> = r.get(5);
                    let mut states: Vec<(step::State, bool)> = states
                        .unwrap_or_default()
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| parse_state(s).map(|s| (s, false)))
                        .collect::<Result<_>>()?;
                    if r.get::<_, i64>(7) > 0 {
                        states.push((step::State::Success, true));
                    }
                    out.push(PlanSummary {
                        id: parse_id(r.get(0))?,
                        flow: r.get(1),
                        state: parse_state(r.get::<_, &str>(2))?,
                        result: Outcome::derive(states),
                        created_at: r.get(3),
                        ended_at: r.get(4),
                        steps: u32::try_from(r.get::<_, i64>(6)).unwrap_or(u32::MAX),
                        owner: r.get(8),
                        start_at: r.get(9),
                    });
                }
                Ok(out)
            })
        })
    }

    fn history(&self, id: PlanId) -> BoxFuture<Result<Vec<HistoryEntry>>> {
        self.read(move |conn| {
            Box::pin(async move {
                let key = id.to_string();
                if conn
                    .query_opt("SELECT 1 FROM plans WHERE id = $1", &[&key])
                    .await?
                    .is_none()
                {
                    return Err(Error::NotFound(key));
                }
                let rows = conn
                    .query(
                        "SELECT at, step, from_state, to_state, data, actor FROM events
                         WHERE plan_id = $1 ORDER BY id",
                        &[&key],
                    )
                    .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok(HistoryEntry {
                            at: r.get(0),
                            step: r.get::<_, Option<i32>>(1).map(u32_of),
                            from: r.get(2),
                            to: r.get(3),
                            data: r
                                .get::<_, Option<&str>>(4)
                                .map(|d| json(d, "event data"))
                                .transpose()?,
                            by: r.get(5),
                        })
                    })
                    .collect()
            })
        })
    }

    fn resolve_id(&self, text: String) -> BoxFuture<Result<PlanId>> {
        self.read(move |conn| {
            Box::pin(async move {
                if text.is_empty() || !text.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                    return Err(Error::NotFound(text));
                }
                let low = text.to_ascii_lowercase();
                let rows = conn
                    .query(
                        "SELECT id FROM plans WHERE id >= $1 AND id < $1 || 'g' LIMIT 2",
                        &[&low],
                    )
                    .await?;
                match rows.as_slice() {
                    [one] => parse_id(one.get(0)),
                    [] => Err(Error::NotFound(text)),
                    _ => Err(Error::Ambiguous(text)),
                }
            })
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
            Box::pin(async move {
                Ok(conn
                    .query(
                        "SELECT capability FROM capabilities ORDER BY capability",
                        &[],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect())
            })
        })
    }

    fn lock_holders(&self) -> BoxFuture<Result<Vec<String>>> {
        self.read(|conn| {
            Box::pin(async move {
                Ok(conn
                    .query("SELECT DISTINCT owner FROM locks ORDER BY owner", &[])
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect())
            })
        })
    }

    fn lock_owner(&self, plan: PlanId) -> BoxFuture<Result<Option<String>>> {
        self.read(move |conn| {
            Box::pin(async move {
                let key = plan.to_string();
                Ok(conn
                    .query_opt("SELECT owner FROM locks WHERE plan_id = $1", &[&key])
                    .await?
                    .map(|r| r.get(0)))
            })
        })
    }

    fn prune_plans(&self, before: Millis, limit: u32) -> BoxFuture<Result<Vec<PlanId>>> {
        self.write_plans(Write::Prune(before, limit))
    }

    fn put_schedule(&self, schedule: crate::ScheduleRecord) -> BoxFuture<Result<()>> {
        self.write(Write::PutSchedule(Box::new(schedule)))
    }

    fn schedules(&self) -> BoxFuture<Result<Vec<crate::ScheduleRecord>>> {
        self.read(|conn| Box::pin(async move { schedules::list(conn).await }))
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
        self.read(move |conn| Box::pin(async move { slots::of(conn, plan).await }))
    }

    fn put_queue(&self, queue: crate::QueueRecord) -> BoxFuture<Result<()>> {
        self.write(Write::PutQueue(Box::new(queue)))
    }

    fn queues(&self) -> BoxFuture<Result<Vec<crate::QueueRecord>>> {
        self.read(|conn| Box::pin(async move { slots::queues(conn).await }))
    }

    fn remove_queue(&self, name: String) -> BoxFuture<Result<()>> {
        self.write(Write::RemoveQueue(name))
    }

    fn inhibit(&self, plan: PlanId) -> BoxFuture<Result<()>> {
        self.write(Write::Inhibit(plan))
    }

    fn is_inhibited(&self, plan: PlanId) -> BoxFuture<Result<bool>> {
        self.read(move |conn| {
            Box::pin(async move {
                let key = plan.to_string();
                Ok(conn
                    .query_opt("SELECT 1 FROM inhibitions WHERE plan_id = $1", &[&key])
                    .await?
                    .is_some())
            })
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
            Box::pin(async move {
                let rows = conn
                    .query(
                        "SELECT id, name, started_at, heartbeat_at, report, process, capabilities FROM nodes
                         ORDER BY name, started_at",
                        &[],
                    )
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| NodeRecord {
                        id: r.get(0),
                        name: r.get(1),
                        started_at: r.get(2),
                        heartbeat_at: r.get(3),
                        report: r
                            .get::<_, Option<&str>>(4)
                            .and_then(|t| serde_json::from_str(t).ok()),
                        process: r.get(5),
                        capabilities: r.get(6),
                    })
                    .collect())
            })
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

    fn check(&self) -> BoxFuture<Result<()>> {
        self.read(|conn| {
            Box::pin(async move {
                conn.query_opt("SELECT 1", &[]).await?;
                Ok(())
            })
        })
    }

    fn clock(&self) -> BoxFuture<Result<Millis>> {
        self.read(|conn| {
            Box::pin(async move {
                let row = conn
                    .query_opt(
                        "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint",
                        &[],
                    )
                    .await?
                    .ok_or_else(|| Error::Backend("the clock query returned nothing".into()))?;
                Ok(row.get(0))
            })
        })
    }

    fn hints(&self) -> Option<watch::Receiver<Hints>> {
        let mut hints = self.inner.hints.lock().unwrap_or_else(|p| p.into_inner());
        let rx = hints.get_or_insert_with(|| {
            let (tx, rx) = watch::channel(Hints::default());
            tokio::spawn(listen(
                self.inner.config.clone(),
                self.inner.shown.clone(),
                tx,
            ));
            rx
        });
        Some(rx.clone())
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
            Box::pin(async move {
                let rows = conn
                    .query(
                        "SELECT m.id, m.plan_id, m.command, m.created_at FROM mailbox m
                         JOIN locks l ON l.plan_id = m.plan_id
                         WHERE m.status = 'pending' AND l.owner = $1
                         ORDER BY m.id",
                        &[&owner],
                    )
                    .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok(Message {
                            id: r.get(0),
                            plan: parse_id(r.get(1))?,
                            instruction: json(r.get::<_, &str>(2), "message")?,
                            created_at: r.get(3),
                        })
                    })
                    .collect()
            })
        })
    }

    fn reply(&self, id: i64, reply: Reply) -> BoxFuture<Result<bool>> {
        let done = self.submit(Write::Reply(id, reply));
        Box::pin(async move { done.await?.into_bool() })
    }

    fn reply_of(&self, id: i64) -> BoxFuture<Result<Reply>> {
        self.read(move |conn| {
            Box::pin(async move {
                let row = conn
                    .query_opt("SELECT status, reason FROM mailbox WHERE id = $1", &[&id])
                    .await?;
                match row {
                    None => Err(Error::NotFound(format!("message {id}"))),
                    Some(r) => match r.get::<_, &str>(0) {
                        "pending" => Ok(Reply::Pending),
                        "done" => Ok(Reply::Done),
                        "refused" => Ok(Reply::Refused(
                            r.get::<_, Option<String>>(1).unwrap_or_default(),
                        )),
                        other => Err(Error::Corrupt(format!("message {id} has status `{other}`"))),
                    },
                }
            })
        })
    }

    fn post_job(&self, job: NewJob) -> BoxFuture<Result<JobRecord>> {
        self.write_job(Write::PostJob(Box::new(job)))
    }

    fn job(&self, id: JobId) -> BoxFuture<Result<JobRecord>> {
        self.read(move |conn| Box::pin(jobs::get(conn, id)))
    }

    fn resolve_job(&self, text: String) -> BoxFuture<Result<JobId>> {
        self.read(move |conn| Box::pin(async move { jobs::resolve(conn, &text).await }))
    }

    fn list_jobs(&self, filter: JobFilter) -> BoxFuture<Result<Vec<JobRecord>>> {
        self.read(move |conn| Box::pin(async move { jobs::list(conn, &filter).await }))
    }

    fn count_jobs(&self, filter: JobFilter) -> BoxFuture<Result<u64>> {
        self.read(move |conn| Box::pin(async move { jobs::count(conn, &filter).await }))
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
        self.read(move |conn| Box::pin(jobs::transitions(conn, id)))
    }

    fn register_entity(&self, entity: Entity) -> BoxFuture<Result<()>> {
        self.write(Write::RegisterEntity(entity))
    }

    fn entities(&self) -> BoxFuture<Result<Vec<Entity>>> {
        self.read(|conn| Box::pin(jobs::entities(conn)))
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
        self.read(|conn| Box::pin(messages::all(conn)))
    }

    fn write_logs(&self, write: crate::LogWrite) -> BoxFuture<Result<()>> {
        self.write(Write::Logs(write))
    }

    fn read_logs(&self, query: crate::LogQuery) -> BoxFuture<Result<Vec<crate::LogRow>>> {
        self.read(move |conn| Box::pin(async move { logs::read(conn, &query).await }))
    }

    fn remove_worker(&self, topic: String) -> BoxFuture<Result<()>> {
        self.write(Write::RemoveWorker(topic))
    }
}

/// Listens for notifications on its own connection and counts them into `hints`; reconnects
/// (with a pause) when the connection is lost, and ends when nobody holds the store any more.
async fn listen(config: Target, shown: String, hints: watch::Sender<Hints>) {
    use futures_util::StreamExt;
    let mut delay = Duration::from_millis(100);
    while !hints.is_closed() {
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, config.connect()).await;
        let (client, mut connection) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                tracing::debug!("cannot listen on {shown}: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(_) => continue,
        };
        let (msgs_tx, mut msgs) = mpsc::unbounded_channel::<String>();
        let pump = tokio::spawn(async move {
            let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(m) = stream.next().await {
                match m {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if msgs_tx.send(n.payload().to_string()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        if client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .is_err()
        {
            pump.abort();
            continue;
        }
        delay = Duration::from_millis(100);
        // Anything may have happened while not listening.
        hints.send_modify(|h| {
            h.plans += 1;
            h.mailbox += 1;
            h.replies += 1;
            h.jobs += 1;
            h.removals += 1;
            h.messages += 1;
        });
        loop {
            tokio::select! {
                m = msgs.recv() => match m {
                    Some(payload) => hints.send_modify(|h| match payload.as_str() {
                        "mailbox" => h.mailbox += 1,
                        "replies" => h.replies += 1,
                        "jobs" => h.jobs += 1,
                        "removal" => h.removals += 1,
                        "messages" => h.messages += 1,
                        _ => h.plans += 1,
                    }),
                    None => break,
                },
                _ = hints.closed() => {
                    pump.abort();
                    return;
                }
            }
        }
        pump.abort();
        drop(client);
    }
}
