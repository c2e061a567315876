//! weft's durable state: the backend-neutral [`Store`] trait and its backends.
//!
//! - [`memory::MemoryStore`]: in-process, for tests and benchmarks.
//! - [`sqlite::SqliteStore`]: the embedded default, one file, WAL, one writer thread that
//!   group-commits the changes of every caller in one transaction.
//! - [`postgres::PostgresStore`]: one database shared by many nodes; claims with `SKIP
//!   LOCKED`, leases by the database's clock, wake-ups by `LISTEN/NOTIFY`, group commit.
//!
//! Besides plans, a store keeps the job board ([`jobs`]) and the messages between executors
//! and remote workers ([`messages`]), schedules ([`schedules`]), and the slots of concurrency
//! limits and queues ([`slots`]).
//!
//! Every write is fenced: a [`Change`] names the state it expects to find, and a change that
//! finds another state fails with [`Error::Conflict`] instead of landing. Every change is also
//! appended to the plan's history.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod codec;
mod error;
pub mod jobs;
pub mod logs;
mod mailbox;
pub mod memory;
pub mod messages;
pub mod metrics;
pub mod postgres;
mod queue;
mod record;
pub mod schedules;
pub mod slots;
pub mod sqlite;
mod wakeups;

pub use error::Error;
pub use jobs::{ClaimedJob, Entity, JobFilter, JobRecord, JobTransition, NewJob};
pub use logs::{LogChunk, LogKey, LogQuery, LogRow, LogWrite};
pub use mailbox::wait_for_reply;
pub use messages::{WireMessage, WorkerRecord};
pub use record::{
    Change, Due, HistoryEntry, Instruction, Message, NewPlan, NodeRecord, PlanFilter, PlanRecord,
    PlanSnapshot, PlanSummary, Reply, StepRecord, Transition,
};
pub use schedules::ScheduleRecord;
pub use slots::{QueueRecord, SlotAnswer, SlotRequest, SlotRow};
pub use wakeups::Wakeups;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use weft_model::job::{JobId, Release};
use weft_model::{Millis, PlanId};

/// A boxed future, so that [`Store`] can be used as a trait object.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where plans, steps, their history and execution locks live.
///
/// Writes are submitted in call order when the method is called (not when the future is first
/// polled), and the returned future resolves once they are durable; so two calls from one task
/// land in the order they were made.
pub trait Store: Send + Sync + 'static {
    /// Persists a new plan and its steps.
    fn create_plan(&self, plan: NewPlan) -> BoxFuture<Result<()>>;

    /// Persists a new plan unless a plan was submitted with the same idempotency `key` less
    /// than `window` ms ago: then nothing is stored and that plan's id comes back (otherwise
    /// the new plan's). Atomic across processes: of racing submissions, one plan is stored.
    fn create_plan_once(
        &self,
        plan: NewPlan,
        key: String,
        window: Millis,
    ) -> BoxFuture<Result<PlanId>>;

    /// Applies changes atomically: all land, or none does (and the error says which conflicted).
    /// `by` — a node's id, or a `weft` process — is recorded in the history as who did it.
    fn apply(&self, by: &str, changes: Vec<Change>) -> BoxFuture<Result<()>>;

    /// A plan with its steps.
    fn load_plan(&self, id: PlanId) -> BoxFuture<Result<PlanSnapshot>>;

    /// Plans, newest first.
    fn list_plans(&self, filter: PlanFilter) -> BoxFuture<Result<Vec<PlanSummary>>>;

    /// How many plans are in each state (states with none left out).
    fn count_plans(&self) -> BoxFuture<Result<Vec<(weft_model::plan::State, u64)>>>;

    /// Every transition of a plan and its steps, oldest first.
    fn history(&self, id: PlanId) -> BoxFuture<Result<Vec<HistoryEntry>>>;

    /// The plan whose id is `text` or starts with it.
    fn resolve_id(&self, text: String) -> BoxFuture<Result<PlanId>>;

    /// Takes the execution lock of a plan for `owner`; fails with [`Error::Locked`] if another
    /// owner holds it. Taking a lock one already holds succeeds.
    fn acquire_lock(&self, plan: PlanId, owner: String) -> BoxFuture<Result<()>>;

    /// Releases the lock if `owner` holds it; with `owner = None`, whoever holds it (used when
    /// the holder is known to be dead).
    fn release_lock(&self, plan: PlanId, owner: Option<String>) -> BoxFuture<Result<()>>;

    /// Deletes at most `limit` stopped plans that ended before `before` — oldest first, with
    /// their steps, history, mailbox and output — and returns their ids. A plan that a
    /// scheduled plan still waits for is kept. One bounded transaction per call: call again
    /// until fewer than `limit` come back.
    fn prune_plans(&self, before: Millis, limit: u32) -> BoxFuture<Result<Vec<PlanId>>>;

    /// Stores a schedule, replacing one of the same name.
    fn put_schedule(&self, schedule: ScheduleRecord) -> BoxFuture<Result<()>>;

    /// Every schedule, by name.
    fn schedules(&self) -> BoxFuture<Result<Vec<ScheduleRecord>>>;

    /// Deletes a schedule ([`Error::NotFound`] when there is none of that name).
    fn remove_schedule(&self, name: String) -> BoxFuture<Result<()>>;

    /// Fires every unpaused schedule that is due at `now` — creating its plans and moving its
    /// next tick on in one transaction, so that each tick fires once however many nodes look
    /// — or, with `trigger`, that schedule once now. Returns the plans started, by schedule.
    fn fire_schedules(
        &self,
        now: Millis,
        trigger: Option<String>,
    ) -> BoxFuture<Result<Vec<(String, PlanId)>>>;

    /// Asks for the slots a plan or a step needs: takes (or keeps) its places in line and
    /// grants every slot at once when all are free ([`slots`] says the rules). Ask again
    /// until granted; a place not asked about for [`slots::STALE`] ms is dropped.
    fn acquire_slots(&self, request: SlotRequest) -> BoxFuture<Result<SlotAnswer>>;

    /// A plan's slots, held or waited for.
    fn slots_of(&self, plan: PlanId) -> BoxFuture<Result<Vec<SlotRow>>>;

    /// Sets a queue's limit and rate (creating it; its bucket starts full).
    fn put_queue(&self, queue: QueueRecord) -> BoxFuture<Result<()>>;

    /// Every queue with its settings and what it holds, by name.
    fn queues(&self) -> BoxFuture<Result<Vec<QueueRecord>>>;

    /// Deletes a queue's settings ([`Error::NotFound`] when there are none): its slots no
    /// longer wait.
    fn remove_queue(&self, name: String) -> BoxFuture<Result<()>>;

    /// Who holds a plan's execution lock.
    fn lock_owner(&self, plan: PlanId) -> BoxFuture<Result<Option<String>>>;

    /// A plan with its steps and who holds its execution lock, read together (what a page
    /// about a plan shows). Backends whose reads cost a round trip do both in one.
    fn load_plan_and_owner(&self, id: PlanId) -> BoxFuture<Result<(PlanSnapshot, Option<String>)>> {
        let (snap, owner) = (self.load_plan(id), self.lock_owner(id));
        Box::pin(async move {
            let (snap, owner) = tokio::join!(snap, owner);
            Ok((snap?, owner?))
        })
    }

    /// Puts an execution-inhibition lock on a plan: no node will execute it again.
    fn inhibit(&self, plan: PlanId) -> BoxFuture<Result<()>>;

    /// Whether a plan is inhibited.
    fn is_inhibited(&self, plan: PlanId) -> BoxFuture<Result<bool>>;

    /// Registers a node, or refreshes its row.
    fn register_node(&self, node: NodeRecord) -> BoxFuture<Result<()>>;

    /// Records a node's heartbeat at `at`; [`Error::NotFound`] if the node was invalidated.
    fn heartbeat(&self, node: String, at: Millis) -> BoxFuture<Result<()>>;

    /// Every registered node.
    fn nodes(&self) -> BoxFuture<Result<Vec<NodeRecord>>>;

    /// Removes a dead node and releases the execution locks it held; returns those plans.
    fn invalidate_node(&self, node: String) -> BoxFuture<Result<Vec<PlanId>>>;

    /// Releases every execution lock `owner` holds (a node whose executor restarted holds
    /// nothing any more); returns those plans.
    fn release_locks(&self, owner: String) -> BoxFuture<Result<Vec<PlanId>>>;

    /// Every Rust task (`name@version`) a node has ever registered with this store, live or
    /// not: a plan needing one of them waits for such a node; one needing another is a
    /// mistake (a misspelt task) that can be refused before it is stored.
    fn known_capabilities(&self) -> BoxFuture<Result<Vec<String>>>;

    /// Everyone holding an execution lock now, each once: nodes look among them for
    /// processes on their machine that are gone (a killed `weft run` or application).
    fn lock_holders(&self) -> BoxFuture<Result<Vec<String>>>;

    /// Stores a node's live report (its manifolds), for `weft status`.
    fn set_node_report(&self, node: String, report: serde_json::Value) -> BoxFuture<Result<()>>;

    /// Checks that the store is still there and answering.
    fn check(&self) -> BoxFuture<Result<()>>;

    /// Makes the store's main file whole by itself (SQLite: moves what the write-ahead log
    /// holds into the database file and empties the log), so that a copy of that one file is
    /// a copy of everything. The other stores have nothing to do.
    fn checkpoint(&self) -> BoxFuture<Result<()>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Writes a consistent copy of the whole store to a new file at `path`, while it is in
    /// use. SQLite only; PostgreSQL is backed up with its own tools (`pg_dump`).
    fn backup(&self, path: std::path::PathBuf) -> BoxFuture<Result<()>> {
        let _ = path;
        Box::pin(std::future::ready(Err(Error::Unsupported(
            "this store has no backup of its own; for PostgreSQL use pg_dump (see the README)"
                .into(),
        ))))
    }

    /// The store's clock: node leases are judged by it, so that one node's skewed clock cannot
    /// make live nodes look dead. The embedded stores use this machine's clock; PostgreSQL
    /// uses the database server's.
    fn clock(&self) -> BoxFuture<Result<Millis>> {
        Box::pin(std::future::ready(Ok(weft_model::now_millis())))
    }

    /// Wake-up hints, if the backend has them (PostgreSQL's `LISTEN/NOTIFY`): counters that
    /// change when any process submits plans or posts messages, so that nodes need not poll.
    fn hints(&self) -> Option<tokio::sync::watch::Receiver<Hints>> {
        None
    }

    /// Takes the execution lock, for `owner`, of up to `limit` plans that wait for a node:
    /// `planned`, or `running` with no lock (their node died or shut down); never inhibited
    /// ones; and only plans whose every Rust task is in `can_run` (`name@version`, as
    /// [`weft_model::flow::Flow::needs`] lists them) — a plan no claimer can run waits; never
    /// a job's plan (the conductor holding the job's claim runs it). Oldest first.
    fn claim_plans(
        &self,
        owner: String,
        limit: u32,
        can_run: Vec<String>,
    ) -> BoxFuture<Result<Vec<PlanId>>>;

    /// Moves scheduled plans that are due at `now` (start time passed, prerequisites stopped)
    /// to `planned`, through `planning`, recording `by` as who did it; reports chained plans
    /// whose prerequisite failed, leaving them for the caller to stop.
    fn promote_due(&self, by: &str, now: Millis) -> BoxFuture<Result<Vec<Due>>>;

    /// Posts a command for the node executing `plan`; returns the message id.
    fn post(&self, plan: PlanId, instruction: Instruction) -> BoxFuture<Result<i64>>;

    /// Unanswered messages for plans whose execution lock `owner` holds, oldest first.
    fn inbox(&self, owner: String) -> BoxFuture<Result<Vec<Message>>>;

    /// Answers a message that is still pending; false if it was answered already.
    fn reply(&self, id: i64, reply: Reply) -> BoxFuture<Result<bool>>;

    /// What became of a message.
    fn reply_of(&self, id: i64) -> BoxFuture<Result<Reply>>;

    // The job board (TaskFlow's): see [`jobs`] and [`weft_model::job`] for the rules. Refusals
    // are [`Error::Job`] with TaskFlow's error names. A job's plan is run only by whoever holds
    // the job's claim (node claimers leave it); a plan that stops completes the job it runs in
    // the same commit, if that job is claimed; a node that is invalidated loses its claims
    // (back on the board, or to the trash once a job had `max_attempts` claims).

    /// Posts a job, unclaimed (TaskFlow's `post`); wakes whoever waits for jobs.
    fn post_job(&self, job: NewJob) -> BoxFuture<Result<JobRecord>>;

    /// A job, wherever it stands (on the board, complete, or in the trash).
    fn job(&self, id: JobId) -> BoxFuture<Result<JobRecord>>;

    /// The job whose id is `text` or starts with it.
    fn resolve_job(&self, text: String) -> BoxFuture<Result<JobId>>;

    /// Jobs in claim order: most urgent first, oldest first within a priority.
    fn list_jobs(&self, filter: JobFilter) -> BoxFuture<Result<Vec<JobRecord>>>;

    /// How many jobs `filter` lists (its limit aside), without reading them.
    fn count_jobs(&self, filter: JobFilter) -> BoxFuture<Result<u64>>;

    /// Claims one job for `who` (TaskFlow's `claim`); the record returned carries the claim's
    /// attempt number, which fences its later writes.
    fn claim_job(&self, id: JobId, who: String) -> BoxFuture<Result<JobRecord>>;

    /// Claims, for `who`, up to `limit` unclaimed jobs in claim order whose every Rust task is
    /// in `can_run`, in one write; jobs that another claimer is taking right now are skipped.
    fn claim_jobs(
        &self,
        who: String,
        limit: u32,
        can_run: Vec<String>,
    ) -> BoxFuture<Result<Vec<JobRecord>>>;

    /// Claims as [`Store::claim_jobs`] does, and creates each claimed job's plan in the same
    /// write ([`JobRecord::plan_to_run`]: its steps pending, its lock held by `who`) unless
    /// it exists already: what a conductor that runs its jobs at once asks for, one write
    /// fewer per job.
    fn claim_jobs_to_run(
        &self,
        who: String,
        limit: u32,
        can_run: Vec<String>,
    ) -> BoxFuture<Result<Vec<ClaimedJob>>>;

    /// Ends `who`'s claim on a job `how` (consume, abandon, trash), fenced by `attempt` when
    /// given; returns the job as it now stands.
    fn release_job(
        &self,
        id: JobId,
        who: String,
        attempt: Option<u32>,
        how: Release,
    ) -> BoxFuture<Result<JobRecord>>;

    /// Puts a trashed job back on the board with its attempts reset and a new plan; its old
    /// plan, if unfinished, is inhibited (no node executes it again).
    fn retry_job(&self, id: JobId, by: String) -> BoxFuture<Result<JobRecord>>;

    /// Every transition of a job, oldest first.
    fn job_history(&self, id: JobId) -> BoxFuture<Result<Vec<JobTransition>>>;

    /// Registers an entity with the board (TaskFlow's `register_entity`), or refreshes it.
    fn register_entity(&self, entity: Entity) -> BoxFuture<Result<()>>;

    /// Every registered entity.
    fn entities(&self) -> BoxFuture<Result<Vec<Entity>>>;

    // Remote workers (see [`messages`]): messages travel through the store to their topic;
    // every process on the store is hinted when some are sent.

    /// Sends messages, each to its topic, in one write.
    fn send_messages(&self, messages: Vec<WireMessage>) -> BoxFuture<Result<()>>;

    /// Takes (removes and returns) up to `limit` messages waiting on `topic`, oldest first;
    /// another taker of the same topic gets others.
    fn take_messages(&self, topic: String, limit: u32) -> BoxFuture<Result<Vec<WireMessage>>>;

    /// Registers a worker (or refreshes its row), its heartbeat now on the store's clock.
    fn register_worker(&self, worker: WorkerRecord) -> BoxFuture<Result<()>>;

    /// Records a worker's heartbeat and how many requests it runs; [`Error::NotFound`] if it
    /// was removed.
    fn worker_heartbeat(&self, topic: String, running: u32) -> BoxFuture<Result<()>>;

    /// Every registered worker.
    fn workers(&self) -> BoxFuture<Result<Vec<WorkerRecord>>>;

    /// Removes a worker (it stopped, or its lease lapsed).
    fn remove_worker(&self, topic: String) -> BoxFuture<Result<()>>;

    // What tasks print (see [`logs`]).

    /// Appends chunks of tasks' output and drops chunks that fell out of a tail window, in
    /// one write (no commit of its own: it rides with the writer's next group).
    fn write_logs(&self, write: LogWrite) -> BoxFuture<Result<()>>;

    /// The stored chunks `query` asks for, in write order.
    fn read_logs(&self, query: LogQuery) -> BoxFuture<Result<Vec<LogRow>>>;
}

/// A shared store.
pub type SharedStore = Arc<dyn Store>;

/// Wake-up hints from every process using a store, counted by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    /// Plans became claimable (submitted, promoted, released).
    pub plans: u64,
    /// Messages were posted.
    pub mailbox: u64,
    /// Messages were answered.
    pub replies: u64,
    /// Jobs became claimable (posted, abandoned, lost, retried): TaskFlow's `POSTED`.
    pub jobs: u64,
    /// Jobs left the board (consumed, completed with their plan, trashed): TaskFlow's
    /// `REMOVAL`.
    pub removals: u64,
    /// Messages were sent to remote workers or their executors.
    pub messages: u64,
}

/// A database URL fit to print: its password, if any, masked.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Opens the store a `--db` argument names: `postgres://USER:PASSWORD@HOST:PORT/DB`,
/// `sqlite://PATH`, `memory:`, or a plain file path — creating a SQLite file that is not there.
pub async fn open(url: &str) -> Result<SharedStore> {
    open_with(url, true).await
}

/// Opens a store that must exist already: a SQLite file that is not there is
/// [`Error::NoStore`], and nothing is created. For commands that read or act on plans.
pub async fn open_existing(url: &str) -> Result<SharedStore> {
    open_with(url, false).await
}

async fn open_with(url: &str, create: bool) -> Result<SharedStore> {
    if url == "memory:" || url == "memory://" {
        return Ok(Arc::new(memory::MemoryStore::new()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PostgresStore::open(url).await?));
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if path.is_empty() {
        return Err(Error::Unsupported("empty database path".into()));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        if scheme != "sqlite" {
            return Err(Error::Unsupported(format!(
                "unknown database scheme `{scheme}://`; use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB"
            )));
        }
    }
    let path = std::path::PathBuf::from(path);
    if !create && !path.exists() {
        return Err(Error::NoStore(path.display().to_string()));
    }
    // Opening waits for a busy file and migrates it: blocking work, off the runtime's threads.
    let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&path))
        .await
        .map_err(|e| Error::Backend(format!("opening the store panicked: {e}")))??;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_masks_only_the_password() {
        assert_eq!(
            super::redact("postgres://weft:s3cr:et@db:5432/weft"),
            "postgres://weft:***@db:5432/weft"
        );
        assert_eq!(
            super::redact("postgres://weft@db/weft"),
            "postgres://weft@db/weft"
        );
        assert_eq!(super::redact("/var/lib/weft.db"), "/var/lib/weft.db");
    }
}
