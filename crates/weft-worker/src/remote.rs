//! The executor's side at work (TaskFlow's `WorkerTaskExecutor`): one loop that owns the
//! [`Requests`] out and the [`WorkerFinder`], and talks to workers over a [`Transport`]. It
//! asks every known topic what it runs (at once, then every `notify_period`), forgets workers
//! silent for `expires_after`, sends waiting requests to capable workers as soon as one is
//! known, turns responses into results, fails requests that wait too long, and on stop fails
//! every request still out.

use crate::finder::{TopicWorker, WorkerFinder};
use crate::requests::{request, Reaction, Requests, Settled};
use crate::transport::{Kind, Message, Transport, TransportError};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use weft_engine::task::Events;
use weft_engine::RemoteCall;
use weft_model::group::TaskEvent;
use weft_model::worker::{
    decode_notify, decode_response, Action, EXPIRES_AFTER, NOTIFY_PERIOD, REQUEST_TIMEOUT,
};
use weft_model::{Failure, PlanId};

/// How often the loop looks at the clock (expiry, notify period) when nothing happens.
const TICK: Duration = Duration::from_millis(100);
/// How often workers' leases are checked.
const LEASE_CHECK: Duration = Duration::from_millis(500);
/// How often workers are asked what they run while a request waits for one.
const NOTIFY_WHILE_WAITING: Duration = Duration::from_millis(500);

/// How the executor's side runs.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Its own topic, where answers come (TaskFlow's `reply_to`).
    pub reply_topic: String,
    /// The topics of workers to ask what they run.
    pub topics: Vec<String>,
    /// How long a request may wait for a worker or its acknowledgement.
    pub request_timeout: Duration,
    /// How often workers are asked what they run.
    pub notify_period: Duration,
    /// How long a silent worker is remembered.
    pub expires_after: Duration,
    /// How long a worker's heartbeat stays good: past it (on transports with leases), what it
    /// was running fails with `WorkerLost`.
    pub worker_lease: Duration,
}

impl RemoteConfig {
    /// The seed's defaults, answering on `reply_topic`, asking `topics`.
    pub fn new(reply_topic: impl Into<String>, topics: Vec<String>) -> Self {
        RemoteConfig {
            reply_topic: reply_topic.into(),
            topics,
            request_timeout: REQUEST_TIMEOUT,
            notify_period: NOTIFY_PERIOD,
            expires_after: EXPIRES_AFTER,
            worker_lease: crate::worker::WORKER_LEASE,
        }
    }
}

enum Command {
    Submit(Box<RemoteCall>, Option<Events>, oneshot::Sender<Settled>),
    Stop(oneshot::Sender<()>),
}

/// The executor's side of remote execution: a handle on its loop.
#[derive(Clone)]
pub struct RemoteExecutor {
    commands: mpsc::UnboundedSender<Command>,
    workers: watch::Receiver<Vec<TopicWorker>>,
}

impl RemoteExecutor {
    /// Starts the loop on the current runtime, listening on `config.reply_topic`.
    pub fn start(
        transport: Arc<dyn Transport>,
        config: RemoteConfig,
    ) -> Result<Self, TransportError> {
        let inbox = transport.listen(&config.reply_topic)?;
        let (commands, rx) = mpsc::unbounded_channel();
        let (workers_tx, workers) = watch::channel(Vec::new());
        let state = Loop {
            transport,
            config,
            requests: Requests::new(),
            finder: WorkerFinder::new(),
            waiting: HashMap::new(),
            started: Instant::now(),
            random: Xorshift(seed()),
            workers: workers_tx,
        };
        tokio::spawn(state.run(rx, inbox));
        Ok(RemoteExecutor { commands, workers })
    }

    /// Runs (or reverts) a task on a worker that runs it; resolves with its result, or the
    /// failure — its own, `RequestTimeout` if no worker took it in time, `WorkerLost`.
    pub async fn run(&self, job: RemoteCall) -> Result<Value, Failure> {
        self.run_with_events(job, None).await
    }

    /// [`RemoteExecutor::run`], the task's progress events (`EVENT` responses) sent to
    /// `events`.
    pub async fn run_with_events(
        &self,
        job: RemoteCall,
        events: Option<Events>,
    ) -> Result<Value, Failure> {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Submit(Box::new(job), events, tx))
            .is_err()
        {
            return Err(stopped());
        }
        match rx.await {
            Ok(settled) => settled.result,
            Err(_) => Err(stopped()),
        }
    }

    /// The workers known now.
    pub fn workers(&self) -> Vec<TopicWorker> {
        self.workers.borrow().clone()
    }

    /// Stops the loop: every request still out fails as expired (TaskFlow's `stop()`).
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn stopped() -> Failure {
    Failure::new("RequestTimeout", "the remote executor stopped")
}

fn seed() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    NEXT.fetch_add(0x2545_f491_4f6c_dd1d, Ordering::Relaxed) ^ u64::from(std::process::id())
}

/// A small random source for choosing among capable workers.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        let mut x = self.0.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Who waits for a request's end, its plan, and where its progress events go.
struct Waiter {
    settled: oneshot::Sender<Settled>,
    plan: PlanId,
    events: Option<Events>,
}

struct Loop {
    transport: Arc<dyn Transport>,
    config: RemoteConfig,
    requests: Requests,
    finder: WorkerFinder,
    /// Who waits for each request's end, and its plan, by correlation id.
    waiting: HashMap<String, Waiter>,
    started: Instant,
    random: Xorshift,
    workers: watch::Sender<Vec<TopicWorker>>,
}

impl Loop {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut inbox: crate::transport::Listener,
    ) {
        let mut next_notify = Instant::now();
        let mut next_lease_check = Instant::now();
        let mut next_id: u64 = 0;
        let mut last_expiry = Instant::now();
        loop {
            if Instant::now() >= next_notify {
                self.notify_all().await;
                // A request waiting for a worker looks again soon: a worker just started
                // should not leave it waiting a whole period.
                let period = if self.requests.any_waiting() {
                    NOTIFY_WHILE_WAITING.min(self.config.notify_period)
                } else {
                    self.config.notify_period
                };
                next_notify = Instant::now() + period;
            }
            if Instant::now() >= next_lease_check {
                self.check_leases().await;
                next_lease_check = Instant::now() + LEASE_CHECK;
            }
            tokio::select! {
                c = commands.recv() => {
                    // Everything submitted meanwhile goes out in one send.
                    let mut next = c;
                    loop {
                        match next {
                            Some(Command::Submit(job, events, tx)) => {
                                next_id += 1;
                                self.submit(*job, events, tx, next_id);
                            }
                            Some(Command::Stop(done)) => {
                                for s in self.requests.stop() {
                                    self.finish(s);
                                }
                                let _ = done.send(());
                                return;
                            }
                            None => return,
                        }
                        match commands.try_recv() {
                            Ok(c) => next = Some(c),
                            Err(_) => break,
                        }
                    }
                    self.dispatch().await;
                }
                m = inbox.next() => match m {
                    Some(m) => self.receive(m).await,
                    None => return,
                },
                () = tokio::time::sleep(TICK) => {}
            }
            // Expiry looks at every request: once per tick, not per message.
            if last_expiry.elapsed() < TICK {
                continue;
            }
            last_expiry = Instant::now();
            let now = self.now();
            for s in self.requests.expire(now) {
                self.finish(s);
            }
            if !self
                .finder
                .expire(now, self.config.expires_after)
                .is_empty()
            {
                self.publish_workers();
            }
        }
    }

    /// A new request, waiting to be dispatched.
    fn submit(
        &mut self,
        job: RemoteCall,
        events: Option<Events>,
        tx: oneshot::Sender<Settled>,
        n: u64,
    ) {
        let id = format!("{}-{}-{}", job.plan, job.step, n);
        let mut r = request(
            &job.task,
            &job.step,
            &job.version,
            job.action,
            job.arguments,
        );
        if job.action == Action::Revert {
            r.result = match (job.result, job.failure.as_ref()) {
                (Some(v), _) => Some(Ok(v)),
                (None, Some(f)) => Some(Err(f.to_taskflow())),
                (None, None) => None,
            };
            if let Some(f) = &job.failure {
                let mut failures = Map::new();
                failures.insert(job.step.clone(), f.to_taskflow());
                r.failures = Some(failures);
            }
        }
        let now = self.now();
        self.requests
            .submit(id.clone(), job.attempt, r, now, self.config.request_timeout);
        self.waiting.insert(
            id,
            Waiter {
                settled: tx,
                plan: job.plan,
                events,
            },
        );
    }

    fn finish(&mut self, settled: Settled) {
        if let Some(w) = self.waiting.remove(&settled.id) {
            let _ = w.settled.send(settled);
        }
    }

    fn publish_workers(&self) {
        self.workers
            .send_replace(self.finder.workers().cloned().collect());
    }

    /// Fails what lapsed workers were running (`WorkerLost`) and forgets them.
    async fn check_leases(&mut self) {
        let lapsed = match self.transport.lapsed(self.config.worker_lease).await {
            Ok(l) => l,
            Err(e) => return tracing::warn!("cannot check workers' leases: {e}"),
        };
        for topic in lapsed {
            for s in self.requests.worker_lost(&topic) {
                tracing::warn!(request = %s.id, %topic, "the request's worker was lost");
                self.finish(s);
            }
            if self.finder.forget(&topic) {
                self.publish_workers();
            }
            let _ = self.transport.forget(&topic).await;
        }
    }

    /// Asks every configured topic, and every worker registered with the transport, what it
    /// runs.
    async fn notify_all(&mut self) {
        let mut topics = self.config.topics.clone();
        match self.transport.topics().await {
            Ok(found) => topics.extend(found),
            Err(e) => tracing::warn!("cannot list the registered workers: {e}"),
        }
        topics.sort();
        topics.dedup();
        for topic in topics {
            let ask = Message {
                kind: Kind::Notify,
                correlation_id: None,
                reply_to: Some(self.config.reply_topic.clone()),
                attempt: 0,
                plan: None,
                body: Value::Object(Map::new()),
            };
            // A worker not up yet answers a later notify.
            let _ = self.transport.send(&topic, ask).await;
        }
    }

    /// Sends the waiting requests that a known worker can run, all in one send.
    async fn dispatch(&mut self) {
        let random = &mut self.random;
        let sends = self.requests.dispatch(&self.finder, &mut || random.next());
        if sends.is_empty() {
            return;
        }
        let mut ids = Vec::with_capacity(sends.len());
        let mut batch = Vec::with_capacity(sends.len());
        for p in sends {
            let plan = self.waiting.get(&p.id).map(|w| w.plan);
            let message = Message {
                kind: Kind::Request,
                correlation_id: Some(p.id.clone()),
                reply_to: Some(self.config.reply_topic.clone()),
                attempt: p.attempt,
                plan,
                body: p.message,
            };
            ids.push(p.id);
            batch.push((p.topic, message));
        }
        if let Err(e) = self.transport.send_many(batch).await {
            for id in ids {
                if let Some(s) = self.requests.publish_failed(&id, &e.to_string()) {
                    self.finish(s);
                }
            }
        }
    }

    async fn receive(&mut self, m: Message) {
        match m.kind {
            Kind::Notify => match decode_notify(&m.body, true) {
                Ok(Some(notify)) => {
                    let now = self.now();
                    if self.finder.on_notify(notify, now) {
                        self.publish_workers();
                        self.dispatch().await;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("ignored a malformed notify answer: {e}"),
            },
            Kind::Response => {
                let Some(id) = m.correlation_id.clone() else {
                    return tracing::warn!("ignored a response with no correlation id");
                };
                let response = match decode_response(&m.body) {
                    Ok(r) => r,
                    Err(e) => {
                        return tracing::warn!(request = %id, "ignored a malformed response: {e}")
                    }
                };
                match self.requests.on_response(&id, m.attempt, response) {
                    Ok(Some(Reaction::Settled(s))) => self.finish(s),
                    Ok(Some(Reaction::Event {
                        event_type,
                        details,
                    })) => {
                        if let Some(events) = self.waiting.get(&id).and_then(|w| w.events.as_ref())
                        {
                            let _ = events.send(TaskEvent {
                                event_type,
                                details,
                                at: weft_model::now_millis(),
                            });
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(request = %id, "ignored a response: {e}"),
                }
            }
            Kind::Request => tracing::warn!("an executor got a request; ignored"),
        }
    }
}

/// The remote executor of every engine of a node or application ([`weft_engine::RemoteFactory`]):
/// each engine gets one over its own store ([`crate::StoreTransport`]), answering on a reply
/// topic of its own, started when the engine's first remote step runs — an engine that runs
/// none sends no message.
#[derive(Debug, Clone)]
pub struct RemoteSteps {
    config: RemoteConfig,
}

impl RemoteSteps {
    /// Remote steps with `config`'s timeouts and topics (its reply topic is replaced by one
    /// per engine).
    pub fn new(config: RemoteConfig) -> Self {
        RemoteSteps { config }
    }
}

impl Default for RemoteSteps {
    fn default() -> Self {
        RemoteSteps::new(RemoteConfig::new("", Vec::new()))
    }
}

/// The reply topic of the executor of an engine that runs as `owner`.
pub fn reply_topic(owner: &str) -> String {
    format!("executor:{owner}")
}

impl weft_engine::RemoteFactory for RemoteSteps {
    fn remote(&self, store: weft_store::SharedStore, owner: &str) -> Arc<dyn weft_engine::Remote> {
        let mut config = self.config.clone();
        config.reply_topic = reply_topic(owner);
        Arc::new(Lazy {
            transport: Arc::new(crate::StoreTransport::new(store)),
            config,
            started: std::sync::Mutex::new(None),
        })
    }
}

/// A remote executor started on first use.
struct Lazy {
    transport: Arc<dyn Transport>,
    config: RemoteConfig,
    started: std::sync::Mutex<Option<RemoteExecutor>>,
}

impl Lazy {
    fn executor(&self) -> Result<RemoteExecutor, Failure> {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = started.as_ref() {
            return Ok(e.clone());
        }
        let e =
            RemoteExecutor::start(self.transport.clone(), self.config.clone()).map_err(|e| {
                Failure::new(
                    "RequestTimeout",
                    format!("cannot start the remote executor: {e}"),
                )
            })?;
        *started = Some(e.clone());
        Ok(e)
    }
}

impl weft_engine::Remote for Lazy {
    fn call(
        &self,
        call: RemoteCall,
        events: Events,
    ) -> weft_store::BoxFuture<Result<Value, Failure>> {
        let executor = self.executor();
        Box::pin(async move { executor?.run_with_events(call, Some(events)).await })
    }
}
