//! The engine: one loop task that owns every manifold's state and changes it only in answer
//! to tickets — install, started, stopped, report, kill — as Juju's engine does.

use crate::config::EngineConfig;
use crate::manifold::{Context, Manifold, Snapshot};
use crate::report::{EngineReport, ManifoldReport, State};
use crate::worker::Worker;
use crate::{Error, InstallError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// A running dependency engine. Cloning gives another handle to the same engine.
#[derive(Clone)]
pub struct DependencyEngine {
    tickets: mpsc::UnboundedSender<Ticket>,
    done: watch::Receiver<Option<Result<(), Error>>>,
}

enum Ticket {
    Install {
        name: String,
        manifold: Manifold,
        reply: oneshot::Sender<Result<(), InstallError>>,
    },
    Started {
        name: String,
        ticket: u64,
        result: Result<Arc<dyn Worker>, StartEnd>,
        log: Vec<crate::manifold::Access>,
    },
    Stopped {
        name: String,
        ticket: u64,
        result: Result<(), Error>,
    },
    Report {
        reply: oneshot::Sender<EngineReport>,
    },
    Kill,
}

impl DependencyEngine {
    /// Starts an engine; refuses an invalid configuration, naming what is wrong.
    pub fn new(config: EngineConfig) -> Result<DependencyEngine, String> {
        config
            .validate()
            .map_err(|e| format!("invalid config: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done) = watch::channel(None);
        let state = Loop {
            config,
            nodes: BTreeMap::new(),
            dependents: HashMap::new(),
            tickets: tx.clone(),
            dying: false,
            worst: None,
            done: done_tx,
            next_ticket: 0,
            rng: (SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7))
                | 1,
        };
        tokio::spawn(state.run(rx));
        Ok(DependencyEngine { tickets: tx, done })
    }

    /// Installs `manifold` as `name` and starts it. Refuses a duplicate name and an install that
    /// would make the graph cyclic; inputs not installed yet are allowed.
    pub async fn install(&self, name: &str, manifold: Manifold) -> Result<(), InstallError> {
        let (reply, rx) = oneshot::channel();
        let ticket = Ticket::Install {
            name: name.to_string(),
            manifold,
            reply,
        };
        self.tickets
            .send(ticket)
            .map_err(|_| InstallError::ShuttingDown)?;
        rx.await.unwrap_or(Err(InstallError::ShuttingDown))
    }

    /// The live report; it keeps answering while the engine stops and after it has stopped.
    pub async fn report(&self) -> EngineReport {
        let (reply, rx) = oneshot::channel();
        let fallback = || EngineReport {
            state: State::Stopped,
            error: None,
            manifolds: BTreeMap::new(),
        };
        if self.tickets.send(Ticket::Report { reply }).is_err() {
            return fallback();
        }
        rx.await.unwrap_or_else(|_| fallback())
    }

    /// Stops every worker, then the engine.
    pub fn kill(&self) {
        let _ = self.tickets.send(Ticket::Kill);
    }

    /// Resolves once the engine has stopped: with the worst fatal error (through the
    /// configuration's filter), if one stopped it.
    pub async fn wait(&self) -> Result<(), Error> {
        let mut done = self.done.clone();
        let result = match done.wait_for(|d| d.is_some()).await {
            Ok(d) => d.clone().unwrap_or(Ok(())),
            Err(_) => Ok(()),
        };
        result
    }
}

/// Why a start produced no worker.
enum StartEnd {
    /// The engine gave up on it (stopping, or an input changed) before or while it ran.
    Aborted,
    /// The start function failed.
    Failed(Error),
}

/// One installed manifold.
struct Node {
    manifold: Manifold,
    state: State,
    worker: Option<Arc<dyn Worker>>,
    /// Identifies the current start or worker; tickets with another are stale.
    ticket: u64,
    /// Aborts the start under way.
    abort: Option<watch::Sender<bool>>,
    /// The engine asked this worker to stop (a bounce): start it again once stopped.
    restart_after_stop: bool,
    start_count: u64,
    started_at: Option<Instant>,
    started_wall: Option<i64>,
    error: Option<String>,
    error_at: Option<i64>,
    /// The last error was `Missing`: an input not up yet, which a start makes moot.
    error_missing: bool,
    recent_errors: u32,
    log: Vec<crate::manifold::Access>,
}

struct Loop {
    config: EngineConfig,
    nodes: BTreeMap<String, Node>,
    /// Who lists a name as an input (installed or not).
    dependents: HashMap<String, BTreeSet<String>>,
    tickets: mpsc::UnboundedSender<Ticket>,
    dying: bool,
    worst: Option<Error>,
    done: watch::Sender<Option<Result<(), Error>>>,
    next_ticket: u64,
    rng: u64,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Loop {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Ticket>) {
        while let Some(ticket) = rx.recv().await {
            match ticket {
                Ticket::Install {
                    name,
                    manifold,
                    reply,
                } => {
                    let _ = reply.send(self.install(name, manifold));
                }
                Ticket::Started {
                    name,
                    ticket,
                    result,
                    log,
                } => self.started(&name, ticket, result, log),
                Ticket::Stopped {
                    name,
                    ticket,
                    result,
                } => self.stopped(&name, ticket, result),
                Ticket::Report { reply } => {
                    let _ = reply.send(self.report());
                }
                Ticket::Kill => self.kill(None),
            }
            if self.dying {
                self.stop_leaves();
            }
            self.finish_if_done();
        }
    }

    fn jitter(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn install(&mut self, name: String, manifold: Manifold) -> Result<(), InstallError> {
        if self.dying {
            return Err(InstallError::ShuttingDown);
        }
        if self.nodes.contains_key(&name) {
            return Err(InstallError::Duplicate(name));
        }
        if let Some(path) = self.cycle_through(&name, &manifold.inputs) {
            return Err(InstallError::Cycle { name, path });
        }
        for input in &manifold.inputs {
            self.dependents
                .entry(input.clone())
                .or_default()
                .insert(name.clone());
        }
        self.nodes.insert(
            name.clone(),
            Node {
                manifold,
                state: State::Stopped,
                worker: None,
                ticket: 0,
                abort: None,
                restart_after_stop: false,
                start_count: 0,
                started_at: None,
                started_wall: None,
                error: None,
                error_at: None,
                error_missing: false,
                recent_errors: 0,
                log: Vec::new(),
            },
        );
        self.request_start(&name, Duration::ZERO);
        Ok(())
    }

    /// A path from `name`'s inputs back to `name` through installed manifolds, if any.
    fn cycle_through(&self, name: &str, inputs: &[String]) -> Option<Vec<String>> {
        let mut stack: Vec<(String, Vec<String>)> = inputs
            .iter()
            .map(|i| (i.clone(), vec![name.to_string(), i.clone()]))
            .collect();
        let mut seen = BTreeSet::new();
        while let Some((cur, path)) = stack.pop() {
            if cur == name {
                return Some(path);
            }
            if !seen.insert(cur.clone()) {
                continue;
            }
            if let Some(node) = self.nodes.get(&cur) {
                for i in &node.manifold.inputs {
                    let mut p = path.clone();
                    p.push(i.clone());
                    stack.push((i.clone(), p));
                }
            }
        }
        None
    }

    /// Starts `name` after `delay` (grown by its recent errors), with a snapshot of its
    /// inputs taken now. Does nothing if it is starting, running or stopping.
    fn request_start(&mut self, name: &str, delay: Duration) {
        if self.dying {
            return;
        }
        let jitter = self.jitter();
        let Some(node) = self.nodes.get(name) else {
            return;
        };
        if node.state != State::Stopped {
            return;
        }
        let delay = self.config.delay(delay, node.recent_errors, jitter);
        let mut snapshot = HashMap::new();
        for input in &node.manifold.inputs {
            let snap = match self.nodes.get(input) {
                Some(Node {
                    worker: Some(w),
                    manifold,
                    ..
                }) => match &manifold.output {
                    Some(output) => Snapshot::Running(output(w)),
                    None => Snapshot::NotExposed,
                },
                _ => Snapshot::NotRunning,
            };
            snapshot.insert(input.clone(), snap);
        }
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let (abort_tx, abort_rx) = watch::channel(false);
        let node = self.nodes.get_mut(name).expect("looked up above");
        node.state = State::Starting;
        node.ticket = ticket;
        node.abort = Some(abort_tx);
        let ctx = Context::new(
            name.to_string(),
            node.manifold.inputs.clone(),
            snapshot,
            abort_rx.clone(),
        );
        let start = node.manifold.start.clone();
        let tickets = self.tickets.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let mut abort = abort_rx;
            let aborted = tokio::select! {
                _ = tokio::time::sleep(delay) => false,
                _ = abort.wait_for(|a| *a) => true,
            };
            let (result, log) = if aborted {
                (Err(StartEnd::Aborted), Vec::new())
            } else {
                let expired = ctx.expired.clone();
                let log = ctx.log.clone();
                let result = start(ctx).await.map_err(StartEnd::Failed);
                expired.store(true, Ordering::SeqCst);
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                (result, log)
            };
            let _ = tickets.send(Ticket::Started {
                name,
                ticket,
                result,
                log,
            });
        });
    }

    fn started(
        &mut self,
        name: &str,
        ticket: u64,
        result: Result<Arc<dyn Worker>, StartEnd>,
        log: Vec<crate::manifold::Access>,
    ) {
        let dying = self.dying;
        let Some(node) = self.nodes.get_mut(name).filter(|n| n.ticket == ticket) else {
            // A start for a manifold uninstalled meanwhile.
            if let Ok(w) = result {
                w.kill();
            }
            return;
        };
        node.abort = None;
        node.log = log;
        match result {
            Ok(worker) => {
                if dying || node.restart_after_stop {
                    // Started after the engine (or a bounce) asked it not to: stop it again.
                    node.state = State::Stopping;
                    worker.kill();
                } else {
                    node.state = State::Started;
                }
                if std::mem::take(&mut node.error_missing) {
                    node.error = None;
                    node.error_at = None;
                }
                node.worker = Some(worker.clone());
                if node.start_count > 0 && node.state == State::Started {
                    tracing::info!(manifold = name, "started again");
                }
                node.start_count += 1;
                node.started_at = Some(Instant::now());
                node.started_wall = Some(wall_ms());
                let tickets = self.tickets.clone();
                let owned = name.to_string();
                tokio::spawn(async move {
                    let result = worker.wait().await;
                    let _ = tickets.send(Ticket::Stopped {
                        name: owned,
                        ticket,
                        result,
                    });
                });
                if node.state == State::Started {
                    self.bounce_dependents(name);
                }
            }
            Err(StartEnd::Aborted) => {
                node.state = State::Stopped;
                self.after_stop(name, Ok(()), false, true);
            }
            Err(StartEnd::Failed(e)) => {
                node.state = State::Stopped;
                self.after_stop(name, Err(e), false, false);
            }
        }
    }

    fn stopped(&mut self, name: &str, ticket: u64, result: Result<(), Error>) {
        let Some(node) = self.nodes.get_mut(name).filter(|n| n.ticket == ticket) else {
            return;
        };
        node.worker = None;
        node.state = State::Stopped;
        self.after_stop(name, result, true, false);
    }

    /// Judges how a worker (or its start) ended and decides what follows.
    fn after_stop(
        &mut self,
        name: &str,
        result: Result<(), Error>,
        was_running: bool,
        aborted: bool,
    ) {
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        let err = match result {
            Ok(()) => None,
            Err(e) => Some(match &node.manifold.filter {
                Some(f) => f(e),
                None => e,
            }),
        };
        let ran_long = node
            .started_at
            .is_some_and(|t| was_running && t.elapsed() > self.config.backoff_reset_time);
        node.recent_errors = match &err {
            None if aborted => 1,
            None => 0,
            Some(Error::Missing(_)) => 1,
            Some(_) if ran_long => 1,
            Some(_) => node.recent_errors.saturating_add(1),
        };
        match &err {
            Some(Error::Missing(_)) => {
                tracing::debug!(manifold = name, "waiting: {}", err_text(&err))
            }
            Some(Error::Bounce | Error::Uninstall) => {
                tracing::debug!(manifold = name, "stopped: {}", err_text(&err))
            }
            Some(e) => tracing::warn!(manifold = name, "stopped with an error: {e}"),
            None => {}
        }
        if let Some(e) = &err {
            node.error = Some(e.to_string());
            node.error_at = Some(wall_ms());
            node.error_missing = matches!(e, Error::Missing(_));
        } else if !aborted {
            node.error = None;
        }
        let restart = std::mem::take(&mut node.restart_after_stop);
        if let Some(e) = &err {
            if self.config.is_fatal.as_ref().is_some_and(|f| f(e)) {
                let worst = match (self.worst.take(), &self.config.worst_error) {
                    (Some(w), Some(pick)) => pick(e.clone(), w),
                    _ => e.clone(),
                };
                self.worst = Some(worst);
                self.kill(None);
            }
        }
        if !self.dying {
            if restart {
                self.request_start(name, self.config.bounce_delay);
            } else {
                match &err {
                    None | Some(Error::Missing(_)) => {}
                    Some(Error::Bounce) => self.request_start(name, self.config.bounce_delay),
                    Some(Error::Uninstall) => {
                        self.uninstall(name);
                    }
                    Some(_) => self.request_start(name, self.config.error_delay),
                }
            }
        }
        if was_running {
            self.bounce_dependents(name);
        }
    }

    fn uninstall(&mut self, name: &str) {
        if let Some(node) = self.nodes.remove(name) {
            for input in &node.manifold.inputs {
                if let Some(d) = self.dependents.get_mut(input) {
                    d.remove(name);
                }
            }
        }
    }

    /// A manifold started or stopped: every dependent is stopped and started again with a
    /// fresh snapshot (or just started, if it was not running).
    fn bounce_dependents(&mut self, name: &str) {
        let dependents: Vec<String> = self
            .dependents
            .get(name)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        for d in dependents {
            let Some(node) = self.nodes.get_mut(&d) else {
                continue;
            };
            match node.state {
                State::Stopped => self.request_start(&d, self.config.bounce_delay),
                State::Started => {
                    node.restart_after_stop = true;
                    node.state = State::Stopping;
                    if let Some(w) = &node.worker {
                        w.kill();
                    }
                }
                State::Starting => {
                    node.restart_after_stop = true;
                    if let Some(a) = &node.abort {
                        let _ = a.send(true);
                    }
                }
                State::Stopping => node.restart_after_stop = true,
            }
        }
    }

    /// Stops everything, in reverse dependency order: a worker is asked to stop once every
    /// manifold that depends on it has stopped. The engine ends when all have.
    fn kill(&mut self, _why: Option<Error>) {
        if self.dying {
            return;
        }
        self.dying = true;
        for node in self.nodes.values_mut() {
            if node.state == State::Starting {
                if let Some(a) = &node.abort {
                    let _ = a.send(true);
                }
            }
        }
        self.stop_leaves();
    }

    /// While dying: stops the running workers none of whose dependents still run.
    fn stop_leaves(&mut self) {
        let leaves: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.state == State::Started)
            .filter(|(name, _)| {
                self.dependents.get(*name).is_none_or(|deps| {
                    deps.iter()
                        .all(|d| self.nodes.get(d).is_none_or(|n| n.state == State::Stopped))
                })
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in leaves {
            if let Some(node) = self.nodes.get_mut(&name) {
                node.state = State::Stopping;
                if let Some(w) = &node.worker {
                    w.kill();
                }
            }
        }
    }

    fn finish_if_done(&mut self) {
        if !self.dying || self.done.borrow().is_some() {
            return;
        }
        if self.nodes.values().any(|n| n.state != State::Stopped) {
            return;
        }
        let result = match self.worst.clone() {
            Some(e) => Err(match &self.config.filter {
                Some(f) => f(e),
                None => e,
            }),
            None => Ok(()),
        };
        let _ = self.done.send(Some(result));
    }

    fn report(&self) -> EngineReport {
        let state = if !self.dying {
            State::Started
        } else if self.done.borrow().is_some() {
            State::Stopped
        } else {
            State::Stopping
        };
        let manifolds = self
            .nodes
            .iter()
            .map(|(name, n)| {
                let report = ManifoldReport {
                    state: n.state,
                    inputs: n.manifold.inputs.clone(),
                    start_count: n.start_count,
                    started_at: n.started_wall,
                    error: n.error.clone(),
                    error_at: n.error_at,
                    report: n.worker.as_ref().and_then(|w| w.report()),
                    resource_log: n.log.clone(),
                };
                (name.clone(), report)
            })
            .collect();
        EngineReport {
            state,
            error: self.worst.as_ref().map(|e| e.to_string()),
            manifolds,
        }
    }
}

fn err_text(e: &Option<Error>) -> String {
    e.as_ref().map(ToString::to_string).unwrap_or_default()
}
