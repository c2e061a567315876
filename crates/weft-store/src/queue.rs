//! Writes as the durable backends queue them for their one writer: what to write, and what a
//! write answers once its transaction committed.

use crate::{
    BoxFuture, Change, ClaimedJob, Due, Entity, Error, Instruction, JobRecord, NewJob, NewPlan,
    NodeRecord, Reply, Result, WireMessage, WorkerRecord,
};
use tokio::sync::oneshot;
use weft_model::job::{JobId, Release};
use weft_model::{Millis, PlanId};

/// A write and where to send its result.
pub(crate) struct Request {
    pub write: Write,
    pub reply: oneshot::Sender<Result<Output>>,
}

/// What to write.
pub(crate) enum Write {
    Create(Box<NewPlan>),
    /// A plan, unless its idempotency key (the second) was taken within the window (the
    /// third, ms): answers the id holding the key.
    CreateOnce(Box<NewPlan>, String, Millis),
    Apply(String, Vec<Change>),
    Acquire(PlanId, String),
    Release(PlanId, Option<String>),
    Inhibit(PlanId),
    RegisterNode(NodeRecord),
    Heartbeat(String, Millis),
    InvalidateNode(String),
    ReleaseLocks(String),
    NodeReport(String, String),
    Claim(String, u32, Vec<String>),
    PromoteDue(String, Millis),
    Post(PlanId, Instruction),
    Reply(i64, Reply),
    PostJob(Box<NewJob>),
    ClaimJob(JobId, String),
    /// Claims for the first, at most the second, runnable with the third; with the fourth,
    /// each job's plan created with its claim (`Store::claim_jobs_to_run`).
    ClaimJobs(String, u32, Vec<String>, bool),
    ReleaseJob(JobId, String, Option<u32>, Release),
    RetryJob(JobId, String),
    RegisterEntity(Entity),
    SendMessages(Vec<WireMessage>),
    TakeMessages(String, u32),
    RegisterWorker(WorkerRecord),
    WorkerHeartbeat(String, u32),
    /// PostgreSQL: tasks' output (SQLite writes it to files).
    Logs(crate::LogWrite),
    RemoveWorker(String),
    /// Stopped plans that ended before this time (and that no waiting plan names as a
    /// prerequisite), at most this many, deleted with everything of theirs.
    Prune(Millis, u32),
    /// SQLite: these plans, chosen by a read as `Prune` chooses them (their log files already
    /// gone), deleted if they still qualify.
    PruneListed(Millis, Vec<PlanId>),
    PutSchedule(Box<crate::ScheduleRecord>),
    RemoveSchedule(String),
    FireSchedules(Millis, Option<String>),
    /// Slots asked for (the rules in `crate::slots`), on the store's clock.
    AcquireSlots(Box<crate::SlotRequest>),
    PutQueue(Box<crate::QueueRecord>),
    RemoveQueue(String),
    /// SQLite: a checkpoint of the write-ahead log (outside any transaction).
    Checkpoint,
    /// SQLite: a consistent copy of the database into a new file (outside any transaction).
    Backup(std::path::PathBuf),
}

/// What a write returns.
pub(crate) enum Output {
    Unit,
    Plans(Vec<PlanId>),
    Due(Vec<Due>),
    Id(i64),
    Bool(bool),
    Jobs(Vec<JobRecord>),
    Claimed(Vec<ClaimedJob>),
    Messages(Vec<WireMessage>),
    Fired(Vec<(String, PlanId)>),
    Slot(crate::SlotAnswer),
}

fn unexpected() -> Error {
    Error::Backend("unexpected writer output".into())
}

impl Output {
    pub(crate) fn into_plans(self) -> Result<Vec<PlanId>> {
        match self {
            Output::Plans(p) => Ok(p),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn into_due(self) -> Result<Vec<Due>> {
        match self {
            Output::Due(d) => Ok(d),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn into_id(self) -> Result<i64> {
        match self {
            Output::Id(id) => Ok(id),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn into_jobs(self) -> Result<Vec<JobRecord>> {
        match self {
            Output::Jobs(j) => Ok(j),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn into_claimed(self) -> Result<Vec<ClaimedJob>> {
        match self {
            Output::Claimed(j) => Ok(j),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn into_fired(self) -> Result<Vec<(String, PlanId)>> {
        match self {
            Output::Fired(f) => Ok(f),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn into_messages(self) -> Result<Vec<WireMessage>> {
        match self {
            Output::Messages(m) => Ok(m),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn into_job(self) -> Result<JobRecord> {
        self.into_jobs()?.pop().ok_or_else(unexpected)
    }

    pub(crate) fn into_slot(self) -> Result<crate::SlotAnswer> {
        match self {
            Output::Slot(a) => Ok(a),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn into_bool(self) -> Result<bool> {
        match self {
            Output::Bool(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }
}

/// A durable backend's handle on its writer.
pub(crate) trait Queue {
    /// Hands a request to the writer; false if the writer is gone.
    fn enqueue(&self, request: Request) -> bool;

    /// Queues a write now (so that one caller's writes land in call order); the future
    /// resolves with its output once it is committed, [`Error::Closed`] if the writer is gone.
    fn submit(
        &self,
        write: Write,
    ) -> impl std::future::Future<Output = Result<Output>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let sent = self.enqueue(Request { write, reply });
        async move {
            if !sent {
                return Err(Error::Closed);
            }
            rx.await.unwrap_or(Err(Error::Closed))
        }
    }

    /// A write that answers nothing.
    fn write(&self, write: Write) -> BoxFuture<Result<()>> {
        let done = self.submit(write);
        Box::pin(async move { done.await.map(drop) })
    }

    /// A write that answers claimed jobs.
    fn write_claimed(&self, write: Write) -> BoxFuture<Result<Vec<ClaimedJob>>> {
        let done = self.submit(write);
        Box::pin(async move { done.await?.into_claimed() })
    }

    /// A write that answers one job.
    fn write_job(&self, write: Write) -> BoxFuture<Result<JobRecord>> {
        let done = self.submit(write);
        Box::pin(async move { done.await?.into_job() })
    }

    /// A write that answers messages.
    fn write_messages(&self, write: Write) -> BoxFuture<Result<Vec<WireMessage>>> {
        let done = self.submit(write);
        Box::pin(async move { done.await?.into_messages() })
    }

    /// A write that answers plans.
    fn write_plans(&self, write: Write) -> BoxFuture<Result<Vec<PlanId>>> {
        let done = self.submit(write);
        Box::pin(async move { done.await?.into_plans() })
    }

    /// Due schedules fired: the plans started, by schedule.
    fn write_fire(
        &self,
        now: Millis,
        trigger: Option<String>,
    ) -> BoxFuture<Result<Vec<(String, PlanId)>>> {
        let done = self.submit(Write::FireSchedules(now, trigger));
        Box::pin(async move { done.await?.into_fired() })
    }

    /// Slots asked for: granted, still waiting, or the lock is gone.
    fn write_slots(&self, request: crate::SlotRequest) -> BoxFuture<Result<crate::SlotAnswer>> {
        let done = self.submit(Write::AcquireSlots(Box::new(request)));
        Box::pin(async move { done.await?.into_slot() })
    }

    /// A plan stored unless its idempotency key is taken: the id holding the key.
    fn write_once(&self, plan: NewPlan, key: String, window: Millis) -> BoxFuture<Result<PlanId>> {
        let id = plan.id;
        let held = self.write_plans(Write::CreateOnce(Box::new(plan), key, window));
        Box::pin(async move {
            held.await?
                .first()
                .copied()
                .ok_or(Error::NotFound(id.to_string()))
        })
    }
}
