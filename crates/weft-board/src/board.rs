//! [`JobBoard`] and [`Job`]: TaskFlow's `JobBoard` API, with its operation names and errors,
//! over any weft store.

use std::collections::BTreeMap;
use std::time::Duration;
use weft_model::flow::Flow;
use weft_model::job::{BoardError, JobId, Priority, Release, State};
use weft_store::{Entity, JobFilter, JobRecord, JobTransition, NewJob, SharedStore};

/// The result of a board operation: refusals are [`weft_store::Error::Job`].
pub type Result<T> = std::result::Result<T, weft_store::Error>;

/// How often [`JobBoard::wait`] and [`Job::wait`] look at first, without wake-up hints
/// (TaskFlow's Redis board starts at 5–10 ms and doubles).
const FIRST_DELAY: Duration = Duration::from_millis(5);
/// The longest pause between looks.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// A change on the board (TaskFlow's notifier events), told to whoever listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    /// Jobs were posted (or came back on the board: abandoned, lost, retried) — `POSTED`.
    Posted,
    /// Jobs left the board (consumed, completed with their plan, trashed) — `REMOVAL`.
    Removal,
}

/// A place where jobs are posted, claimed, consumed, abandoned and trashed (TaskFlow's
/// `JobBoard`), kept in a weft store: a fleet of nodes on one PostgreSQL share one board.
#[derive(Clone)]
pub struct JobBoard {
    name: String,
    store: SharedStore,
}

/// A job on a board, as it stood when it was read: [`Job::state`] and [`JobBoard::find_owner`]
/// read again.
#[derive(Clone)]
pub struct Job {
    record: JobRecord,
    board: JobBoard,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // TaskFlow's `__str__`: the name, priority, id and details.
        write!(
            f,
            "Job: {} (priority={}, uuid={}, details={})",
            self.record.name, self.record.priority, self.record.id, self.record.details
        )
    }
}

impl JobBoard {
    /// The board kept in `store`, called `name` (TaskFlow's boards are named; one store holds
    /// one board).
    pub fn new(name: impl Into<String>, store: SharedStore) -> Self {
        JobBoard {
            name: name.into(),
            store,
        }
    }

    /// The board's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store it is kept in.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    fn job(&self, record: JobRecord) -> Job {
        Job {
            record,
            board: self.clone(),
        }
    }

    /// Posts a job that runs `flow` with `inputs` (checked against the flow, defaults filled
    /// in: a job whose inputs do not fit is refused, and nothing is posted).
    pub async fn post(
        &self,
        name: impl Into<String>,
        flow: Flow,
        inputs: BTreeMap<String, serde_json::Value>,
        priority: Priority,
    ) -> Result<Job> {
        let inputs = flow
            .bind_inputs(inputs)
            .map_err(|e| weft_store::Error::Unsupported(e.to_string()))?;
        let job = NewJob {
            name: name.into(),
            priority,
            ..NewJob::new(flow, inputs)
        };
        self.post_job(job).await
    }

    /// Posts a job as given (its inputs already bound).
    pub async fn post_job(&self, job: NewJob) -> Result<Job> {
        Ok(self.job(self.store.post_job(job).await?))
    }

    /// A job by id, wherever it stands.
    pub async fn get(&self, id: JobId) -> Result<Job> {
        Ok(self.job(self.store.job(id).await?))
    }

    /// Claims `job` for `who`: `UnclaimableJob` if anyone holds it (its owner too),
    /// `NotFound` if it is off the board. The job returned carries the claim.
    pub async fn claim(&self, job: &Job, who: &str) -> Result<Job> {
        Ok(self.job(self.store.claim_job(job.id(), who.into()).await?))
    }

    /// Claims up to `limit` jobs in claim order whose every Rust task is in `can_run`.
    pub async fn claim_some(
        &self,
        who: &str,
        limit: u32,
        can_run: Vec<String>,
    ) -> Result<Vec<Job>> {
        let jobs = self.store.claim_jobs(who.into(), limit, can_run).await?;
        Ok(jobs.into_iter().map(|r| self.job(r)).collect())
    }

    /// The claim `who` holds on `job`, if `job` came from that claim: later writes are fenced
    /// by it.
    fn attempt(job: &Job, who: &str) -> Option<u32> {
        (job.record.state == State::Claimed && job.record.owner.as_deref() == Some(who))
            .then_some(job.record.attempts)
    }

    async fn release(&self, job: &Job, who: &str, how: Release) -> Result<Job> {
        let attempt = Self::attempt(job, who);
        Ok(self.job(
            self.store
                .release_job(job.id(), who.into(), attempt, how)
                .await?,
        ))
    }

    /// Removes a job `who` has claimed from the board: it is complete. `JobFailure` if someone
    /// else owns it (or `who`'s claim was lost and taken again), `NotFound` if it is unclaimed
    /// or gone.
    pub async fn consume(&self, job: &Job, who: &str) -> Result<()> {
        self.release(job, who, Release::Consume).await.map(drop)
    }

    /// Gives a claimed job back for another to claim — or, once it has had `max_attempts`
    /// claims, to the trash; returns the job as it now stands.
    pub async fn abandon(&self, job: &Job, who: &str) -> Result<Job> {
        self.release(job, who, Release::Abandon).await
    }

    /// Takes a broken job `who` has claimed off the board, keeping it in the trash for review.
    pub async fn trash(&self, job: &Job, who: &str) -> Result<()> {
        self.release(job, who, Release::Trash { force: false })
            .await
            .map(drop)
    }

    /// Trashes a job whoever holds it, claimed or not: an operator's override.
    pub async fn trash_forced(&self, job: &Job, who: &str) -> Result<()> {
        self.release(job, who, Release::Trash { force: true })
            .await
            .map(drop)
    }

    /// Puts a trashed job back on the board, attempts reset, with a new plan.
    pub async fn retry(&self, job: &Job, who: &str) -> Result<Job> {
        weft_model::job::check_who(who)?;
        Ok(self.job(self.store.retry_job(job.id(), who.into()).await?))
    }

    /// Who holds the job's claim now, if anyone.
    pub async fn find_owner(&self, job: &Job) -> Result<Option<String>> {
        let now = self.store.job(job.id()).await?;
        Ok((now.state == State::Claimed).then_some(now.owner).flatten())
    }

    /// The jobs on the board in claim order (most urgent first, oldest first within a
    /// priority); only the unclaimed ones if `only_unclaimed`.
    pub async fn iterjobs(&self, only_unclaimed: bool) -> Result<Vec<Job>> {
        let filter = JobFilter {
            only_unclaimed,
            ..JobFilter::default()
        };
        let jobs = self.store.list_jobs(filter).await?;
        Ok(jobs.into_iter().map(|r| self.job(r)).collect())
    }

    /// The trash: jobs taken off the board as broken, most urgent and oldest first.
    pub async fn trashed(&self) -> Result<Vec<Job>> {
        let filter = JobFilter {
            trashed: true,
            ..JobFilter::default()
        };
        let jobs = self.store.list_jobs(filter).await?;
        Ok(jobs.into_iter().map(|r| self.job(r)).collect())
    }

    /// How many jobs are on the board (claimed or not), counted by the store.
    pub async fn job_count(&self) -> Result<usize> {
        let n = self.store.count_jobs(JobFilter::default()).await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Waits until the board has jobs and returns them (TaskFlow's `wait`); with a timeout
    /// that passes first, `NotFound` ("expired waiting for jobs"). Wakes as soon as a job is
    /// posted where the store sends hints (PostgreSQL's `LISTEN/NOTIFY`, SQLite's wake-up
    /// sockets); otherwise looks every 5 ms, doubling up to 1 s.
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<Vec<Job>> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut wake = weft_store::Wakeups::new(self.store.hints(), |h| h.jobs);
        let mut delay = FIRST_DELAY;
        loop {
            wake.mark();
            let jobs = self.iterjobs(false).await?;
            if !jobs.is_empty() {
                return Ok(jobs);
            }
            let now = tokio::time::Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(BoardError::NotFound(format!(
                    "expired waiting for jobs to appear on board `{}`",
                    self.name
                ))
                .into());
            }
            let pause = if wake.exist() { MAX_DELAY } else { delay };
            delay = (delay * 2).min(MAX_DELAY);
            let until = deadline.map_or(now + pause, |d| (now + pause).min(d));
            let _ = tokio::time::timeout_at(until, wake.next()).await;
        }
    }

    /// The board's notifications as they happen in any process sharing the store: on
    /// PostgreSQL through `LISTEN/NOTIFY`, on SQLite through the wake-up sockets beside the
    /// file. `None` for a store that sends none (the in-memory one). They are hints: several
    /// posts may come as one `Posted`; read the board ([`JobBoard::iterjobs`]) for what changed.
    pub fn notifications(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Notification>> {
        let mut hints = self.store.hints()?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut seen = *hints.borrow_and_update();
            while hints.changed().await.is_ok() {
                let now = *hints.borrow_and_update();
                let told = [
                    (now.jobs != seen.jobs, Notification::Posted),
                    (now.removals != seen.removals, Notification::Removal),
                ];
                seen = now;
                for (happened, what) in told {
                    if happened && tx.send(what).is_err() {
                        return;
                    }
                }
            }
        });
        Some(rx)
    }

    /// Registers an entity with the board — a conductor, the only kind there is.
    pub async fn register_entity(&self, entity: Entity) -> Result<()> {
        self.store.register_entity(entity).await
    }

    /// Every transition of a job, oldest first.
    pub async fn history(&self, job: &Job) -> Result<Vec<JobTransition>> {
        self.store.job_history(job.id()).await
    }
}

impl Job {
    /// Its id (TaskFlow's `uuid`).
    pub fn id(&self) -> JobId {
        self.record.id
    }

    /// Its name (not unique).
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Its priority.
    pub fn priority(&self) -> Priority {
        self.record.priority
    }

    /// Its details: the flow it runs and its inputs, and whatever was posted with it.
    pub fn details(&self) -> &serde_json::Value {
        &self.record.details
    }

    /// The job as it was read.
    pub fn record(&self) -> &JobRecord {
        &self.record
    }

    /// The board it is on.
    pub fn board(&self) -> &JobBoard {
        &self.board
    }

    /// Its state now, read from the board.
    pub async fn state(&self) -> Result<State> {
        Ok(self.board.store.job(self.id()).await?.state)
    }

    /// Waits for the job to be complete: true once it is, false if `timeout` passes first
    /// (TaskFlow's `Job.wait`: looks every 10 ms, doubling up to 60 s — here up to 1 s, or at
    /// once on a wake-up hint).
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut delay = FIRST_DELAY * 2;
        loop {
            if self.state().await? == State::Complete {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(false);
            }
            let until = deadline.map_or(now + delay, |d| (now + delay).min(d));
            tokio::time::sleep_until(until).await;
            delay = (delay * 2).min(MAX_DELAY);
        }
    }
}
