//! The shell around the director: the only place where its decisions meet I/O.
//!
//! One task owns the [`Director`]. It takes inputs in batches, lets the director decide, hands
//! the changes to the store (which submits them at once, in order), and queues the rest behind
//! the store's acknowledgement. A second task, the dispatcher, waits for each acknowledgement
//! in turn and only then starts the work, sets the timers and tells waiters and observers —
//! so nothing runs before its `running` is durable, and no dependent starts before the result
//! it depends on is.

use crate::director::{Actions, Creation, Director, Input, Intent, PlanEnd, Refusal, Rescue};
use crate::executor::Executor;
use crate::process::{end_leftovers, ProcessGroups};
use crate::task::Registry;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use weft_model::{now_millis, PlanId};
use weft_model::{plan, step};
use weft_store::{BoxFuture, Change, NewPlan, PlanSnapshot, SharedStore, StepRecord};

/// The most inputs the director takes before it persists what it decided.
const MAX_INPUTS_PER_BATCH: usize = 4096;
/// How many updates an observer may fall behind before it misses some.
const UPDATE_BUFFER: usize = 4096;

/// How an engine runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The most steps running at once (default: CPUs × 4).
    pub parallelism: usize,
    /// Who this engine is when it takes execution locks (default: this process,
    /// `weft@HOST:PID:START`, so that after a crash the lock is taken over at once).
    pub owner: String,
    /// Makes the executor its remote steps go to (default: none — they fail, saying so).
    pub remote: Option<Arc<dyn crate::remote::RemoteFactory>>,
    /// How much of each stream a command prints is kept in the store (default
    /// [`crate::logs::DEFAULT_CAP`], 1 MiB: the first half and the latest half); 0 keeps
    /// nothing.
    pub log_cap: usize,
}

impl Default for Config {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Config {
            parallelism: cpus * 4,
            // A name whose death this machine can tell: a restarted process takes over.
            owner: crate::owner::me(),
            remote: None,
            log_cap: crate::logs::DEFAULT_CAP,
        }
    }
}

/// Why an execution could not go ahead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] weft_store::Error),
    /// The director refused the plan (Dynflow's reasons: already running, stopped, …).
    #[error("{0}")]
    Refused(String),
    /// The engine stopped before the plan ended.
    #[error("the engine stopped before the plan ended")]
    Stopped,
    /// The inputs do not fit the flow.
    #[error(transparent)]
    Input(#[from] weft_model::flow::InputError),
}

/// A durable change, told to observers once it is persisted.
// Step updates are nearly all updates; see `weft_store::Change`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Update {
    /// A step changed.
    Step {
        /// The plan.
        plan: PlanId,
        /// The step's new record (its `name` is empty; look it up in the flow).
        step: StepRecord,
    },
    /// A running group step's tasks moved on.
    Group {
        /// The plan.
        plan: PlanId,
        /// The group's step.
        step: u32,
        /// Its tasks now.
        progress: weft_model::group::Progress,
    },
    /// A plan changed state.
    Plan {
        /// The plan.
        plan: PlanId,
        /// Its new state.
        state: plan::State,
    },
}

/// A running engine: a director, a dispatcher, and an executor.
#[derive(Clone)]
pub struct Engine {
    inbox: mpsc::UnboundedSender<Input>,
    processes: ProcessGroups,
    stopped: Arc<AtomicBool>,
    in_flight: watch::Receiver<usize>,
    updates: broadcast::Sender<Update>,
    store: SharedStore,
    config: Arc<Config>,
    /// What its registry can run (`name@version`): it refuses plans that need more.
    capabilities: Arc<[String]>,
    /// Where its commands' output is kept.
    logs: Option<crate::logs::LogSink>,
}

/// What the dispatcher does once a batch is durable.
struct Batch {
    ack: BoxFuture<weft_store::Result<()>>,
    actions: Actions,
    updates: Vec<Update>,
    plans: Vec<PlanId>,
}

impl Engine {
    /// Starts an engine on the current tokio runtime.
    pub fn start(store: SharedStore, registry: Arc<Registry>, config: Config) -> Engine {
        let (inbox, rx) = mpsc::unbounded_channel();
        let (updates, _) = broadcast::channel(UPDATE_BUFFER);
        let (batches_tx, batches_rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let seed = now_millis() as u64 ^ u64::from(std::process::id()) << 32;
        let director = Director::new(config.parallelism, seed);
        let capabilities = registry.capabilities().into();
        let remote = config
            .remote
            .as_ref()
            .map(|f| f.remote(store.clone(), &config.owner));
        let mut executor = Executor::new(registry, remote);
        let logs = (config.log_cap > 0)
            .then(|| crate::logs::LogSink::start(store.clone(), config.log_cap));
        if let Some(logs) = &logs {
            executor = executor.with_logs(logs.clone());
        }
        let processes = executor.process_groups();
        let (in_flight_tx, in_flight) = watch::channel(0);
        let shell = Shell {
            store: store.clone(),
            owner: config.owner.clone(),
            executor,
            processes: processes.clone(),
            inbox: inbox.clone(),
            updates: updates.clone(),
            queued,
            stopped: stopped.clone(),
            in_flight: Arc::new(in_flight_tx),
        };
        tokio::spawn(shell.clone().director_loop(director, rx, batches_tx));
        tokio::spawn(shell.dispatcher(batches_rx));
        Engine {
            inbox,
            processes,
            stopped,
            in_flight,
            updates,
            store,
            config: Arc::new(config),
            capabilities,
            logs,
        }
    }

    /// Writes what its commands printed and it still holds (at most [`crate::logs::FLUSH`]
    /// of it) to the store now; resolves once that is durable. A process that is about to
    /// exit calls it.
    pub async fn flush_logs(&self) {
        if let Some(logs) = &self.logs {
            logs.flush().await;
        }
    }

    /// The store it persists to.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Durable changes as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    /// Plans `flow` with `inputs` (defaults filled in, required ones checked) and stores it,
    /// ready to execute.
    pub async fn plan(
        &self,
        flow: weft_model::flow::Flow,
        inputs: std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<PlanId, Error> {
        let inputs = flow.bind_inputs(inputs)?;
        let new = NewPlan::new(flow, inputs);
        let id = new.id;
        self.store.create_plan(new).await?;
        Ok(id)
    }

    /// Executes (or resumes) a stored plan until it stops or pauses, holding its execution
    /// lock throughout.
    pub async fn execute(&self, plan: PlanId, rescue: Rescue) -> Result<PlanEnd, Error> {
        self.take_up(plan, rescue, Intent::Run).await
    }

    /// Stores a new plan, its lock taken by this engine, and executes it at once — without
    /// reading back what it just wrote: the plan's creation and its first decisions reach the
    /// store in that order, one right behind the other. `stored` learns when (and whether) the
    /// plan is durable, `ended` how it ended as soon as that is durable (before the lock is
    /// released); the result is the same as [`Engine::execute`]'s.
    pub async fn submit_and_execute(
        &self,
        mut new: NewPlan,
        rescue: Rescue,
        stored: oneshot::Sender<Result<(), weft_store::Error>>,
        ended: oneshot::Sender<PlanEnd>,
    ) -> Result<PlanEnd, Error> {
        let id = new.id;
        if let Err(refused) = self.check_needs(id, &new.flow) {
            let _ = stored.send(Err(weft_store::Error::Unsupported(refused.to_string())));
            return Err(refused);
        }
        let owner = self.config.owner.clone();
        new.owner = Some(owner.clone());
        let (plan, steps) = new.records();
        // The shell writes the plan right ahead of the director's first changes for it, so
        // that one commit often holds both.
        let (created_tx, created_rx) = oneshot::channel();
        let ending = self.start_director(
            PlanSnapshot { plan, steps },
            rescue,
            Intent::Run,
            false,
            Some(Box::new(Creation {
                plan: new,
                stored: created_tx,
            })),
            false,
        );
        let created = match created_rx.await {
            Ok(writing) => writing.await,
            Err(_) => Err(weft_store::Error::Closed),
        };
        let failed = created.as_ref().err().map(|e| e.to_string());
        let _ = stored.send(created);
        let result = match failed {
            // Nothing was stored: the director's first write fails its fence, and stops.
            Some(why) => {
                let _ = ending.await;
                return Err(Error::Store(weft_store::Error::Unavailable(why)));
            }
            None => ending.await,
        };
        if let Ok(end) = &result {
            let _ = ended.send(end.clone());
        }
        // An ended plan gave its lock back with its last change.
        if !matches!(result, Ok(_) | Err(Error::Stopped)) {
            let _ = self.store.release_lock(id, Some(owner)).await;
        }
        result
    }

    /// Executes a new plan that the store created already, its lock held by this engine's
    /// owner (a conductor's claim creates its jobs' plans so), without reading it back: `new`
    /// must be what was stored — and `started`, whether its start was stored with it (it is
    /// then `running` since its creation). The result is the same as [`Engine::execute`]'s.
    pub async fn execute_created(
        &self,
        new: NewPlan,
        rescue: Rescue,
        started: bool,
    ) -> Result<PlanEnd, Error> {
        let id = new.id;
        let owner = self.config.owner.clone();
        let result = match self.check_needs(id, &new.flow) {
            Ok(()) => {
                let (mut plan, steps) = new.records();
                if started {
                    plan.state = plan::State::Running;
                    plan.started_at = Some(plan.created_at);
                    let _ = self.updates.send(Update::Plan {
                        plan: id,
                        state: plan::State::Running,
                    });
                }
                let snapshot = PlanSnapshot { plan, steps };
                self.start_director(snapshot, rescue, Intent::Run, false, None, started)
                    .await
            }
            Err(refused) => Err(refused),
        };
        // An ended plan gave its lock back with its last change.
        if !matches!(result, Ok(_) | Err(Error::Stopped)) {
            let _ = self.store.release_lock(id, Some(owner)).await;
        }
        result
    }

    /// This engine's owner: the holder of the locks it takes.
    pub fn owner(&self) -> &str {
        &self.config.owner
    }

    /// Refuses a plan needing a Rust task this engine's registry lacks.
    fn check_needs(&self, plan: PlanId, flow: &weft_model::flow::Flow) -> Result<(), Error> {
        let missing: Vec<String> = flow
            .needs()
            .into_iter()
            .filter(|need| !self.capabilities.contains(need))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::Refused(format!(
            "plan {plan} needs Rust tasks this process has not registered: {}; a node or application that registered them runs it",
            missing.join(", ")
        )))
    }

    /// Cancels a paused plan: what did not complete is cancelled, what did is reverted; the
    /// plan stops with result `cancelled`.
    pub async fn cancel(&self, plan: PlanId) -> Result<PlanEnd, Error> {
        self.take_up(plan, Rescue::Pause, Intent::Cancel).await
    }

    async fn take_up(
        &self,
        plan: PlanId,
        rescue: Rescue,
        intent: Intent,
    ) -> Result<PlanEnd, Error> {
        let owner = self.config.owner.clone();
        match self.store.acquire_lock(plan, owner.clone()).await {
            // Its holder was a process on this machine that is gone (killed mid-plan): take
            // the plan over, fenced on that holder so that a live one is never displaced.
            Err(weft_store::Error::Locked { owner: holder, .. })
                if crate::owner::is_dead(&holder) =>
            {
                self.store.release_lock(plan, Some(holder)).await?;
                self.store.acquire_lock(plan, owner.clone()).await?;
            }
            acquired => acquired?,
        }
        let result = self.start_locked(plan, rescue, intent).await;
        // A plan that ended gave its lock back with its last change. An abandoned engine
        // keeps its locks: whoever takes over (its node's next executor, or another node after
        // invalidation) releases them, so that a late release here can never drop a lock that
        // has changed hands. A failed release leaves a lock whose owner is gone; its
        // invalidation clears it.
        if !matches!(result, Ok(_) | Err(Error::Stopped)) {
            let _ = self.store.release_lock(plan, Some(owner)).await;
        }
        result
    }

    async fn start_locked(
        &self,
        plan: PlanId,
        rescue: Rescue,
        intent: Intent,
    ) -> Result<PlanEnd, Error> {
        let inhibited = self.store.is_inhibited(plan).await?;
        let snapshot = self.store.load_plan(plan).await?;
        self.check_needs(plan, &snapshot.plan.flow)?;
        // A step left `running` or `reverting` was interrupted: before it is re-run or marked
        // abnormal, whatever its run left on this machine is killed and gone.
        if snapshot
            .steps
            .iter()
            .any(|s| matches!(s.state, step::State::Running | step::State::Reverting))
        {
            end_leftovers(plan, None).await;
        }
        self.start_director(snapshot, rescue, intent, inhibited, None, false)
            .await
    }

    /// Hands a plan to the director now; the future resolves when it ends or is refused.
    fn start_director(
        &self,
        snapshot: PlanSnapshot,
        rescue: Rescue,
        intent: Intent,
        inhibited: bool,
        create: Option<Box<Creation>>,
        started: bool,
    ) -> impl Future<Output = Result<PlanEnd, Error>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        tracing::info!(
            plan = %snapshot.plan.id, flow = %snapshot.plan.flow.name, ?intent, "plan taken up"
        );
        if let Some(tracer) = crate::traces::tracer() {
            tracer.plan_started(snapshot.plan.id, &snapshot.plan.flow.name);
        }
        let start = Input::Start {
            started,
            snapshot: Box::new(snapshot),
            rescue,
            intent,
            inhibited,
            waiter: Some(tx),
            create,
        };
        let sent = self.inbox.send(start).is_ok();
        async move {
            if !sent {
                return Err(Error::Stopped);
            }
            match rx.await {
                Ok(Ok(end)) => Ok(end),
                Ok(Err(Refusal::Refused(reason))) => Err(Error::Refused(reason)),
                Ok(Err(Refusal::StoreFailed(why))) => {
                    Err(Error::Store(weft_store::Error::Unavailable(why)))
                }
                Err(_) => Err(Error::Stopped),
            }
        }
    }

    /// Delivers an event to a suspended step of a plan this engine executes; resolves once
    /// the step's new state is durable, or with why the event was refused.
    pub async fn event(
        &self,
        plan: PlanId,
        step: u32,
        data: serde_json::Value,
        optional: bool,
    ) -> Result<(), Error> {
        let instruction = weft_store::Instruction::Event {
            step,
            data,
            optional,
        };
        self.ask(plan, instruction, None).await
    }

    /// Halts a plan this engine executes: its running steps are cancelled and their
    /// processes killed; the plan stops.
    pub async fn halt(&self, plan: PlanId) -> Result<(), Error> {
        self.ask(plan, weft_store::Instruction::Halt, None).await
    }

    /// Delivers a message of the store's mailbox (an event or a halt another process
    /// posted). Its reply is written in the same transaction as the changes it answers; if
    /// that transaction fails, a refusal is written instead. [`Error::Stopped`]: nothing was
    /// decided and nothing written.
    pub async fn deliver(&self, message: weft_store::Message) -> Result<(), Error> {
        self.ask(message.plan, message.instruction, Some(message.id))
            .await
    }

    /// Hands an event or a halt to the director; resolves once its outcome is durable.
    async fn ask(
        &self,
        plan: PlanId,
        instruction: weft_store::Instruction,
        message: Option<i64>,
    ) -> Result<(), Error> {
        let (waiter, rx) = oneshot::channel();
        let answer = Some(crate::director::Answer {
            waiter,
            message: message.map(|id| (plan, id)),
        });
        let input = match instruction {
            weft_store::Instruction::Event {
                step,
                data,
                optional,
            } => Input::Event {
                plan,
                step,
                data,
                optional,
                answer,
            },
            weft_store::Instruction::Halt => Input::Halt { plan, answer },
        };
        self.inbox.send(input).map_err(|_| Error::Stopped)?;
        rx.await
            .map_err(|_| Error::Stopped)?
            .map_err(Error::Refused)
    }

    /// Starts nothing new from now on; running work may finish (graceful shutdown).
    pub fn terminate(&self) {
        let _ = self.inbox.send(Input::Terminate);
    }

    /// How many work items are in flight, as it changes.
    pub fn in_flight(&self) -> watch::Receiver<usize> {
        self.in_flight.clone()
    }

    /// Stops deciding and persisting, then kills the process groups of every command running
    /// now; returns how many. For a process told to stop: what was persisted stays as it is
    /// (steps `running`), and the next start re-runs those steps — the deaths caused here are
    /// not recorded as failures.
    pub fn abandon(&self) -> usize {
        self.stopped.store(true, Ordering::SeqCst);
        self.processes.kill_all()
    }
}

#[derive(Clone)]
struct Shell {
    store: SharedStore,
    /// Who this engine is: recorded in the history as the author of its changes.
    owner: String,
    executor: Executor,
    processes: ProcessGroups,
    inbox: mpsc::UnboundedSender<Input>,
    updates: broadcast::Sender<Update>,
    /// Batches handed to the dispatcher and not yet dispatched.
    queued: Arc<AtomicUsize>,
    /// Set by [`Engine::abandon`]: decide and persist nothing more.
    stopped: Arc<AtomicBool>,
    /// The director's count of work in flight, after each batch.
    in_flight: Arc<watch::Sender<usize>>,
}

/// Polls a future once; `Some` if it was ready.
fn now_or_never<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    match fut
        .as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()))
    {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

impl Shell {
    async fn director_loop(
        self,
        mut director: Director,
        mut rx: mpsc::UnboundedReceiver<Input>,
        batches: mpsc::UnboundedSender<Batch>,
    ) {
        let mut creations = Vec::new();
        while let Some(mut first) = rx.recv().await {
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            let now = now_millis();
            take_creation(&mut first, &mut creations);
            director.handle(first, now);
            for _ in 1..MAX_INPUTS_PER_BATCH {
                match rx.try_recv() {
                    Ok(mut input) => {
                        take_creation(&mut input, &mut creations);
                        director.handle(input, now)
                    }
                    Err(_) => break,
                }
            }
            let mut actions = director.take();
            self.in_flight
                .send_if_modified(|n| std::mem::replace(n, director.in_flight()) != *n);
            for bug in actions.illegal.drain(..) {
                tracing::error!("director bug: {bug}");
            }
            if actions.is_empty() {
                self.store_creations(&mut creations);
                continue;
            }
            let mut changes = std::mem::take(&mut actions.changes);
            // Replies to mailbox messages land with the changes they answer.
            changes.extend(actions.answers.iter().filter_map(|(answer, result)| {
                let (plan, message) = answer.message?;
                Some(Change::Reply {
                    plan,
                    message,
                    reply: match result {
                        Ok(()) => weft_store::Reply::Done,
                        Err(why) => weft_store::Reply::Refused(why.clone()),
                    },
                })
            }));
            // A plan that ends here (stops, or pauses for an operator) gives its execution lock
            // back in the same commit. Only its end: a takeover's passing `paused` does not.
            changes.extend(actions.ended.iter().map(|(end, _)| Change::Unlock {
                plan: end.plan,
                owner: self.owner.clone(),
            }));
            // The plans to give up on should the write fail. Changes come grouped by plan, so
            // removing adjacent repeats keeps this short without sorting on the hot path.
            let mut plans: Vec<PlanId> = changes.iter().map(Change::plan).collect();
            plans.dedup();
            let updates = if self.updates.receiver_count() > 0 {
                to_updates(&changes)
            } else if tracing::enabled!(tracing::Level::INFO) {
                // No observer, but failed steps are logged once they are durable.
                failed_steps(&changes)
            } else {
                Vec::new()
            };
            // New plans are queued right ahead of the changes that start them.
            self.store_creations(&mut creations);
            let mut ack = self.store.apply(&self.owner, changes);
            // Slots are asked for right behind the changes (the store takes one caller's
            // writes in order): often in the same commit, a round trip sooner.
            for ask in std::mem::take(&mut actions.slots) {
                tokio::spawn(wait_for_slots(
                    self.store.clone(),
                    self.owner.clone(),
                    ask,
                    self.inbox.clone(),
                ));
            }
            // Fast path: nothing queued ahead and the store answered at once (in-memory).
            if self.queued.load(Ordering::Acquire) == 0 {
                if let Some(result) = now_or_never(&mut ack) {
                    self.finish(result, actions, updates, plans);
                    continue;
                }
            }
            let depth = self.queued.fetch_add(1, Ordering::AcqRel) + 1;
            crate::metrics::metrics().batches_queued.set(depth as i64);
            if batches
                .send(Batch {
                    ack,
                    actions,
                    updates,
                    plans,
                })
                .is_err()
            {
                return;
            }
        }
    }

    /// Queues the new plans' writes now; each creator awaits its own.
    fn store_creations(&self, creations: &mut Vec<Creation>) {
        for c in creations.drain(..) {
            let _ = c.stored.send(self.store.create_plan(c.plan));
        }
    }

    async fn dispatcher(self, mut batches: mpsc::UnboundedReceiver<Batch>) {
        while let Some(batch) = batches.recv().await {
            let result = batch.ack.await;
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            self.finish(result, batch.actions, batch.updates, batch.plans);
            let depth = self.queued.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
            crate::metrics::metrics().batches_queued.set(depth as i64);
        }
    }

    /// Acts on a batch whose changes were persisted (or failed to be).
    fn finish(
        &self,
        result: weft_store::Result<()>,
        actions: Actions,
        updates: Vec<Update>,
        plans: Vec<PlanId>,
    ) {
        let Actions {
            work,
            timers,
            ended,
            refused,
            answers,
            kill,
            ..
        } = actions;
        for (_, reason, waiter) in refused {
            if let Some(w) = waiter {
                let _ = w.send(Err(reason));
            }
        }
        if let Err(e) = result {
            tracing::error!("persisting a batch failed: {e}");
            for (end, waiter) in ended {
                if let Some(w) = waiter {
                    let _ = w.send(Err(Refusal::StoreFailed(format!(
                        "plan {} ended, but the store failed: {e}",
                        end.plan
                    ))));
                }
            }
            for (answer, _) in answers {
                let why = format!("the store failed: {e}");
                if let Some((_, message)) = answer.message {
                    // Best effort: the store just failed; the sender withdraws on its own
                    // when it stops waiting.
                    let store = self.store.clone();
                    let reply = weft_store::Reply::Refused(why.clone());
                    tokio::spawn(async move { store.reply(message, reply).await });
                }
                let _ = answer.waiter.send(Err(why));
            }
            let _ = self.inbox.send(Input::PersistFailed {
                plans,
                error: e.to_string(),
            });
            return;
        }
        for u in updates {
            log_update(&u);
            let _ = self.updates.send(u);
        }
        for (plan, step) in kill {
            self.processes.kill_step(plan, step);
        }
        for (answer, result) in answers {
            let _ = answer.waiter.send(result);
        }
        for item in work {
            let executor = self.executor.clone();
            let inbox = self.inbox.clone();
            tokio::spawn(async move {
                let input = executor.run(item, &inbox).await;
                let _ = inbox.send(input);
            });
        }
        for timer in timers {
            let inbox = self.inbox.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timer.after).await;
                let _ = inbox.send(timer.input);
            });
        }
        for (end, waiter) in ended {
            if let Some(tracer) = crate::traces::tracer() {
                tracer.plan_ended(
                    end.plan,
                    &end.state.to_string(),
                    &end.outcome.to_string(),
                    end.failure.as_ref().map(|f| f.message.as_str()),
                );
            }
            crate::metrics::metrics()
                .plans_ended
                .get_or_create(&vec![
                    ("state", end.state.to_string()),
                    ("result", end.outcome.to_string()),
                ])
                .inc();
            match &end.failure {
                Some(f) => tracing::info!(
                    plan = %end.plan, state = %end.state, outcome = %end.outcome,
                    failure = %f.message, "plan ended"
                ),
                None => tracing::info!(
                    plan = %end.plan, state = %end.state, outcome = %end.outcome, "plan ended"
                ),
            }
            if let Some(w) = waiter {
                let _ = w.send(Ok(end));
            }
        }
    }
}

/// The line an operator reads at `info` for a step failing (each attempt); plans' starts and
/// ends are logged where they are taken up and where they end.
fn log_update(u: &Update) {
    if let Update::Step { plan, step } = u {
        if step.state == step::State::Error {
            let why = step.failure.as_ref().map_or("", |f| f.message.as_str());
            tracing::info!(%plan, step = step.index, attempt = step.attempt, failure = why, "step failed");
        }
    }
}

/// The steps that failed in `changes`, as updates (to log).
fn failed_steps(changes: &[Change]) -> Vec<Update> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Step { plan, step, .. } if step.state == step::State::Error => {
                Some(Update::Step {
                    plan: *plan,
                    step: step.clone(),
                })
            }
            _ => None,
        })
        .collect()
}

/// Asks the store for a plan's or a step's slots until they are granted — then tells the
/// director — or until the plan is no longer this engine's (its end gave every slot back and
/// its lock went with it) or the engine is gone. The first ask is queued when this is called,
/// so that it lands right behind the caller's earlier writes; waits between the next grow from
/// 10 ms to 250 ms, or as long as a queue's rate says.
fn wait_for_slots(
    store: SharedStore,
    owner: String,
    ask: crate::director::SlotAsk,
    inbox: mpsc::UnboundedSender<Input>,
) -> impl Future<Output = ()> + Send + 'static {
    use std::time::Duration;
    let request = weft_store::SlotRequest {
        plan: ask.plan,
        step: ask.step,
        owner,
        wants: ask.wants,
    };
    let mut asking = Some(store.acquire_slots(request.clone()));
    async move {
        let mut pause = Duration::from_millis(10);
        let mut said = None;
        while !inbox.is_closed() {
            let answer = match asking.take() {
                Some(first) => first.await,
                None => store.acquire_slots(request.clone()).await,
            };
            match answer {
                Ok(weft_store::SlotAnswer::Granted) => {
                    let _ = inbox.send(Input::SlotGranted {
                        plan: request.plan,
                        step: request.step,
                    });
                    return;
                }
                Ok(weft_store::SlotAnswer::Gone) => return,
                Ok(weft_store::SlotAnswer::Waiting { on, retry }) => {
                    if said.as_ref() != Some(&on) {
                        tracing::debug!(plan = %request.plan, step = ?request.step, "waiting for {on}");
                        said = Some(on);
                    }
                    let wait = pause.max(Duration::from_millis(retry.max(0) as u64));
                    tokio::time::sleep(wait).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                Err(e) => {
                    tracing::warn!(plan = %request.plan, "asking for slots failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

fn to_updates(changes: &[Change]) -> Vec<Update> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Step { plan, step, .. } => Some(Update::Step {
                plan: *plan,
                step: step.clone(),
            }),
            Change::Plan { plan, to, .. } => Some(Update::Plan {
                plan: *plan,
                state: *to,
            }),
            Change::Group {
                plan,
                step,
                progress,
                ..
            } => Some(Update::Group {
                plan: *plan,
                step: *step,
                progress: progress.clone(),
            }),
            Change::Bookkeeping { .. }
            | Change::Reply { .. }
            | Change::Unlock { .. }
            | Change::Release { .. } => None,
        })
        .collect()
}

/// Takes a new plan out of a start input, for the shell to store.
fn take_creation(input: &mut Input, creations: &mut Vec<Creation>) {
    if let Input::Start { create, .. } = input {
        if let Some(c) = create.take() {
            creations.push(*c);
        }
    }
}
