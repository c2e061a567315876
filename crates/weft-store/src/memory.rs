//! The in-memory store: everything in one mutex-guarded map. For tests and benchmarks; it
//! follows the same rules (fencing, atomic batches, history) as the durable backends.

use crate::record::{judge_prerequisites, promotion, Readiness};
use crate::{
    BoxFuture, Change, ClaimedJob, Due, Entity, Error, HistoryEntry, Instruction, JobFilter,
    JobRecord, JobTransition, Message, NewJob, NewPlan, NodeRecord, PlanFilter, PlanRecord,
    PlanSnapshot, PlanSummary, Reply, Result, StepRecord, Store, WireMessage, WorkerRecord,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use weft_model::job::{self, BoardError, JobId};
use weft_model::plan::{self, Outcome};
use weft_model::{step, PlanId};

/// A store that lives and dies with the process.
#[derive(Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    plans: HashMap<PlanId, Entry>,
    locks: HashMap<PlanId, String>,
    inhibited: HashSet<PlanId>,
    nodes: BTreeMap<String, NodeRecord>,
    mailbox: Vec<(Message, Reply)>,
    /// Every capability a node has registered.
    capabilities: std::collections::BTreeSet<String>,
    jobs: Jobs,
    /// Messages waiting, by topic, oldest first.
    messages: HashMap<String, std::collections::VecDeque<WireMessage>>,
    workers: BTreeMap<String, WorkerRecord>,
    /// Tasks' output chunks, in write order, by id.
    logs: BTreeMap<i64, crate::LogChunk>,
    next_log: i64,
    /// Idempotency keys: the plan each was taken by, and when.
    keys: HashMap<String, (PlanId, weft_model::Millis)>,
    schedules: BTreeMap<String, crate::ScheduleRecord>,
    slots: crate::slots::Table,
}

/// The job board: postings, their histories, and the registered entities.
#[derive(Default)]
struct Jobs {
    jobs: HashMap<JobId, JobRecord>,
    history: HashMap<JobId, Vec<JobTransition>>,
    entities: BTreeMap<(String, String), Entity>,
}

impl Jobs {
    fn get(&self, id: JobId) -> Result<&JobRecord> {
        self.jobs
            .get(&id)
            .ok_or_else(|| Error::Job(BoardError::NotFound(format!("job {id} does not exist"))))
    }

    fn record(&mut self, job: &JobRecord, from: Option<job::State>, by: &str) {
        self.history.entry(job.id).or_default().push(JobTransition {
            at: job.modified_at,
            from,
            to: job.state,
            by: by.to_string(),
            attempt: job.attempts,
            note: job.note.clone(),
        });
    }

    /// Moves a job and records it; returns it as it now stands.
    fn moved(
        &mut self,
        id: JobId,
        mv: job::Move,
        owner: Option<String>,
        by: &str,
        then: impl FnOnce(&mut JobRecord),
    ) -> JobRecord {
        let Some(job) = self.jobs.get_mut(&id) else {
            unreachable!("a job just read is there")
        };
        let from = job.state;
        job.state = mv.to;
        job.owner = owner;
        job.note = mv.note;
        job.modified_at = weft_model::now_millis();
        then(job);
        let job = job.clone();
        self.record(&job, Some(from), by);
        job
    }

    fn post(&mut self, new: &NewJob) -> Result<JobRecord> {
        if self.jobs.contains_key(&new.id) {
            return Err(Error::Job(BoardError::JobFailure(format!(
                "a job with id {} exists already",
                new.id
            ))));
        }
        let job = new.record(weft_model::now_millis());
        self.record(&job, None, "post");
        self.jobs.insert(job.id, job.clone());
        Ok(job)
    }

    fn claim(&mut self, id: JobId, who: &str) -> Result<JobRecord> {
        job::check_who(who)?;
        let mv = job::claim(self.get(id)?.standing(), who)?;
        Ok(self.moved(id, mv, Some(who.to_string()), who, |j| j.attempts += 1))
    }

    fn claim_many(&mut self, who: &str, limit: u32, can_run: &[String]) -> Result<Vec<JobRecord>> {
        job::check_who(who)?;
        let mut open: Vec<&JobRecord> = self
            .jobs
            .values()
            .filter(|j| j.state == job::State::Unclaimed)
            .filter(|j| j.needs.iter().all(|n| can_run.contains(n)))
            .collect();
        open.sort_by_key(|j| crate::jobs::claim_order(j));
        let ids: Vec<JobId> = open.iter().take(limit as usize).map(|j| j.id).collect();
        ids.into_iter().map(|id| self.claim(id, who)).collect()
    }

    fn release(
        &mut self,
        id: JobId,
        who: &str,
        attempt: Option<u32>,
        how: job::Release,
    ) -> Result<JobRecord> {
        job::check_who(who)?;
        let mv = job::release(self.get(id)?.standing(), who, attempt, how)?;
        let owner = (mv.to == job::State::Complete).then(|| who.to_string());
        Ok(self.moved(id, mv, owner, who, |_| {}))
    }

    /// Puts a trashed job back; returns it and its old plan (never to run again).
    fn retry(&mut self, id: JobId, by: &str) -> Result<(JobRecord, PlanId)> {
        let old = self.get(id)?.plan;
        let mv = job::retry(self.get(id)?.standing())?;
        let job = self.moved(id, mv, None, by, |j| {
            j.attempts = 0;
            j.plan = PlanId::new();
        });
        Ok((job, old))
    }

    fn lose_claims(&mut self, owner: &str) {
        let lost: Vec<(JobId, job::Move)> = self
            .jobs
            .values()
            .filter(|j| j.state == job::State::Claimed && j.owner.as_deref() == Some(owner))
            .map(|j| {
                (
                    j.id,
                    job::lose(j.standing(), &format!("its owner {owner} was lost")),
                )
            })
            .collect();
        for (id, mv) in lost {
            self.moved(id, mv, None, "invalidation", |_| {});
        }
    }

    fn complete_with_plan(&mut self, plan: PlanId, by: &str) {
        let Some(job) = self
            .jobs
            .values()
            .find(|j| j.plan == plan && j.state == job::State::Claimed)
        else {
            return;
        };
        let (id, owner) = (job.id, job.owner.clone());
        let mv = job::Move {
            to: job::State::Complete,
            note: Some(format!("its plan {plan} stopped")),
        };
        self.moved(id, mv, owner, by, |_| {});
    }
}

struct Entry {
    plan: PlanRecord,
    steps: Vec<StepRecord>,
    history: Vec<Recorded>,
    /// The Rust tasks it needs (`Flow::needs`), for claims.
    needs: Vec<String>,
}

/// Stores a new plan (and its lock, when it has an owner).
fn insert_plan(inner: &mut Inner, plan: NewPlan) -> Result<()> {
    if inner.plans.contains_key(&plan.id) {
        return Err(Error::Exists(plan.id));
    }
    let (record, steps) = plan.records();
    let needs = record.flow.needs();
    inner.plans.insert(
        plan.id,
        Entry {
            plan: record,
            steps,
            history: Vec::new(),
            needs,
        },
    );
    if let Some(owner) = plan.owner {
        inner.locks.insert(plan.id, owner);
    }
    Ok(())
}

/// A history entry kept compactly; it becomes a [`HistoryEntry`] when read.
struct Recorded {
    at: weft_model::Millis,
    step: Option<u32>,
    from: &'static str,
    to: &'static str,
    attempt: Option<u32>,
    why: Option<String>,
    by: Arc<str>,
}

/// The state a fenced change expects or leaves, for checking a batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tag {
    Plan(plan::State),
    Step(weft_model::step::State),
}

impl Tag {
    fn name(self) -> String {
        match self {
            Tag::Plan(s) => s.to_string(),
            Tag::Step(s) => s.to_string(),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied batch: `apply` validates
        // before it mutates. So a poisoned lock's data is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn weft_store_transition(r: &Recorded) -> crate::Transition<'_> {
    crate::Transition {
        at: r.at,
        step: r.step,
        from: r.from,
        to: r.to,
        attempt: r.attempt,
        why: r.why.as_deref(),
    }
}

fn ready<T: Send + 'static>(r: Result<T>) -> BoxFuture<Result<T>> {
    Box::pin(std::future::ready(r))
}

impl Inner {
    fn check(&self, c: &Change) -> Result<()> {
        let entry = self
            .plans
            .get(&c.plan())
            .ok_or_else(|| Error::NotFound(c.plan().to_string()))?;
        match c {
            Change::Plan { plan, from, .. } if entry.plan.state != *from => Err(Error::Conflict {
                plan: *plan,
                step: None,
                expected: from.to_string(),
                found: entry.plan.state.to_string(),
            }),
            Change::Step {
                plan, from, step, ..
            } => {
                let found = entry
                    .steps
                    .get(step.index as usize)
                    .ok_or_else(|| Error::NotFound(format!("{plan} step {}", step.index)))?
                    .state;
                if found != *from {
                    return Err(Error::Conflict {
                        plan: *plan,
                        step: Some(step.index),
                        expected: from.to_string(),
                        found: found.to_string(),
                    });
                }
                Ok(())
            }
            Change::Group {
                plan,
                step,
                attempt,
                ..
            } => {
                let found = entry
                    .steps
                    .get(*step as usize)
                    .ok_or_else(|| Error::NotFound(format!("{plan} step {step}")))?;
                if found.state != step::State::Running || found.attempt != *attempt {
                    return Err(Error::Conflict {
                        plan: *plan,
                        step: Some(*step),
                        expected: format!("running (attempt {attempt})"),
                        found: format!("{} (attempt {})", found.state, found.attempt),
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn apply(&mut self, by: &Arc<str>, c: Change) {
        if let Change::Unlock { plan, owner } = &c {
            if self.locks.get(plan) == Some(owner) {
                self.locks.remove(plan);
            }
            return;
        }
        if let Change::Release { plan, step } = &c {
            self.slots.release(*plan, *step);
            return;
        }
        if let Change::Reply { message, reply, .. } = c {
            if let Some((_, r)) = self.mailbox.get_mut((message - 1) as usize) {
                if *r == Reply::Pending {
                    *r = reply;
                }
            }
            return;
        }
        let Some(entry) = self.plans.get_mut(&c.plan()) else {
            return;
        };
        if let Some(t) = c.transition() {
            entry.history.push(Recorded {
                at: t.at,
                step: t.step,
                from: t.from,
                to: t.to,
                attempt: t.attempt,
                why: t.why.map(str::to_string),
                by: by.clone(),
            });
        }
        match c {
            Change::Plan { to, at, .. } => {
                entry.plan.state = to;
                if to == plan::State::Running && entry.plan.started_at.is_none() {
                    entry.plan.started_at = Some(at);
                }
                if to == plan::State::Stopped {
                    entry.plan.ended_at = Some(at);
                    self.jobs.complete_with_plan(entry.plan.id, by);
                }
            }
            Change::Step { step, .. } => {
                let i = step.index as usize;
                let name = std::mem::take(&mut entry.steps[i].name);
                entry.steps[i] = StepRecord { name, ..step };
            }
            Change::Group { step, progress, .. } => {
                entry.steps[step as usize].group = Some(progress);
            }
            Change::Bookkeeping { bookkeeping, .. } => entry.plan.bookkeeping = bookkeeping,
            Change::Reply { .. } | Change::Unlock { .. } | Change::Release { .. } => {}
        }
    }
}

impl Store for MemoryStore {
    fn create_plan_once(
        &self,
        plan: NewPlan,
        key: String,
        window: weft_model::Millis,
    ) -> BoxFuture<Result<PlanId>> {
        let now = weft_model::now_millis();
        let mut inner = self.lock();
        if let Some((held, at)) = inner.keys.get(&key) {
            if *at > now - window && inner.plans.contains_key(held) {
                return ready(Ok(*held));
            }
        }
        let id = plan.id;
        if let Err(e) = insert_plan(&mut inner, plan) {
            return ready(Err(e));
        }
        inner.keys.insert(key, (id, now));
        ready(Ok(id))
    }

    fn create_plan(&self, plan: NewPlan) -> BoxFuture<Result<()>> {
        ready(insert_plan(&mut self.lock(), plan))
    }

    fn apply(&self, by: &str, changes: Vec<Change>) -> BoxFuture<Result<()>> {
        let by: Arc<str> = Arc::from(by);
        let mut inner = self.lock();
        // Check against the state as it will be after the earlier changes of the same batch.
        let mut pending: HashMap<(PlanId, Option<u32>), Tag> = HashMap::new();
        for c in &changes {
            let (key, expected, to) = match c {
                Change::Plan { plan, from, to, .. } => {
                    ((*plan, None), Tag::Plan(*from), Tag::Plan(*to))
                }
                Change::Step {
                    plan, from, step, ..
                } => (
                    (*plan, Some(step.index)),
                    Tag::Step(*from),
                    Tag::Step(step.state),
                ),
                Change::Group { plan, step, .. } => (
                    (*plan, Some(*step)),
                    Tag::Step(step::State::Running),
                    Tag::Step(step::State::Running),
                ),
                Change::Bookkeeping { .. }
                | Change::Reply { .. }
                | Change::Unlock { .. }
                | Change::Release { .. } => continue,
            };
            match pending.get(&key) {
                Some(found) if *found != expected => {
                    return ready(Err(Error::Conflict {
                        plan: key.0,
                        step: key.1,
                        expected: expected.name(),
                        found: found.name(),
                    }))
                }
                Some(_) => {}
                None => {
                    if let Err(e) = inner.check(c) {
                        return ready(Err(e));
                    }
                }
            }
            pending.insert(key, to);
        }
        for c in changes {
            inner.apply(&by, c);
        }
        ready(Ok(()))
    }

    fn load_plan(&self, id: PlanId) -> BoxFuture<Result<PlanSnapshot>> {
        let inner = self.lock();
        ready(
            inner
                .plans
                .get(&id)
                .map(|e| PlanSnapshot {
                    plan: e.plan.clone(),
                    steps: e.steps.clone(),
                })
                .ok_or_else(|| Error::NotFound(id.to_string())),
        )
    }

    fn list_plans(&self, filter: PlanFilter) -> BoxFuture<Result<Vec<PlanSummary>>> {
        let inner = self.lock();
        let mut out: Vec<PlanSummary> = inner
            .plans
            .values()
            .filter(|e| filter.admits(e.plan.id, &e.plan.flow.name, e.plan.state))
            .map(|e| PlanSummary {
                id: e.plan.id,
                flow: e.plan.flow.name.clone(),
                state: e.plan.state,
                result: Outcome::derive(e.steps.iter().map(|s| (s.state, s.warning.is_some()))),
                created_at: e.plan.created_at,
                ended_at: e.plan.ended_at,
                steps: e.steps.len() as u32,
                owner: inner.locks.get(&e.plan.id).cloned(),
                start_at: e.plan.start_at,
            })
            .collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.id));
        if let Some(limit) = filter.limit {
            out.truncate(limit as usize);
        }
        ready(Ok(out))
    }

    fn count_plans(&self) -> BoxFuture<Result<Vec<(plan::State, u64)>>> {
        let inner = self.lock();
        let mut counts = std::collections::BTreeMap::<&str, (plan::State, u64)>::new();
        for e in inner.plans.values() {
            counts
                .entry(e.plan.state.as_str())
                .or_insert((e.plan.state, 0))
                .1 += 1;
        }
        ready(Ok(counts.into_values().collect()))
    }

    fn history(&self, id: PlanId) -> BoxFuture<Result<Vec<HistoryEntry>>> {
        let inner = self.lock();
        ready(
            inner
                .plans
                .get(&id)
                .map(|e| {
                    e.history
                        .iter()
                        .map(|r| weft_store_transition(r).to_entry(Some(&r.by)))
                        .collect()
                })
                .ok_or_else(|| Error::NotFound(id.to_string())),
        )
    }

    fn resolve_id(&self, text: String) -> BoxFuture<Result<PlanId>> {
        let inner = self.lock();
        let matches: Vec<PlanId> = inner
            .plans
            .keys()
            .filter(|id| id.to_string().starts_with(&text))
            .copied()
            .collect();
        ready(match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::NotFound(text)),
            _ => Err(Error::Ambiguous(text)),
        })
    }

    fn acquire_lock(&self, plan: PlanId, owner: String) -> BoxFuture<Result<()>> {
        let mut inner = self.lock();
        if !inner.plans.contains_key(&plan) {
            return ready(Err(Error::NotFound(plan.to_string())));
        }
        match inner.locks.get(&plan) {
            Some(holder) if *holder != owner => ready(Err(Error::Locked {
                plan,
                owner: holder.clone(),
            })),
            _ => {
                inner.locks.insert(plan, owner);
                ready(Ok(()))
            }
        }
    }

    fn release_lock(&self, plan: PlanId, owner: Option<String>) -> BoxFuture<Result<()>> {
        let mut inner = self.lock();
        if owner.is_none() || inner.locks.get(&plan) == owner.as_ref() {
            inner.locks.remove(&plan);
        }
        ready(Ok(()))
    }

    fn acquire_slots(&self, request: crate::SlotRequest) -> BoxFuture<Result<crate::SlotAnswer>> {
        let mut inner = self.lock();
        let locked = inner.locks.get(&request.plan) == Some(&request.owner);
        let now = weft_model::now_millis();
        ready(Ok(inner.slots.acquire(&request, now, locked)))
    }

    fn slots_of(&self, plan: PlanId) -> BoxFuture<Result<Vec<crate::SlotRow>>> {
        ready(Ok(self.lock().slots.of(plan)))
    }

    fn put_queue(&self, queue: crate::QueueRecord) -> BoxFuture<Result<()>> {
        self.lock().slots.put_queue(queue);
        ready(Ok(()))
    }

    fn queues(&self) -> BoxFuture<Result<Vec<crate::QueueRecord>>> {
        ready(Ok(self.lock().slots.queues()))
    }

    fn remove_queue(&self, name: String) -> BoxFuture<Result<()>> {
        ready(self.lock().slots.remove_queue(&name))
    }

    fn lock_owner(&self, plan: PlanId) -> BoxFuture<Result<Option<String>>> {
        ready(Ok(self.lock().locks.get(&plan).cloned()))
    }

    fn prune_plans(
        &self,
        before: weft_model::Millis,
        limit: u32,
    ) -> BoxFuture<Result<Vec<PlanId>>> {
        let mut inner = self.lock();
        let waited_for: HashSet<PlanId> = inner
            .plans
            .values()
            .filter(|e| matches!(e.plan.state, plan::State::Scheduled | plan::State::Pending))
            .flat_map(|e| e.plan.after.iter().copied())
            .collect();
        let mut old: Vec<(weft_model::Millis, PlanId)> = inner
            .plans
            .values()
            .filter(|e| e.plan.state == plan::State::Stopped && !waited_for.contains(&e.plan.id))
            .filter_map(|e| {
                e.plan
                    .ended_at
                    .filter(|&t| t < before)
                    .map(|t| (t, e.plan.id))
            })
            .collect();
        old.sort();
        old.truncate(limit as usize);
        let ids: HashSet<PlanId> = old.iter().map(|(_, id)| *id).collect();
        for id in &ids {
            inner.plans.remove(id);
            inner.locks.remove(id);
            inner.inhibited.remove(id);
        }
        inner.mailbox.retain(|(m, _)| !ids.contains(&m.plan));
        inner.logs.retain(|_, c| !ids.contains(&c.key.plan));
        ready(Ok(old.into_iter().map(|(_, id)| id).collect()))
    }

    fn put_schedule(&self, schedule: crate::ScheduleRecord) -> BoxFuture<Result<()>> {
        self.lock()
            .schedules
            .insert(schedule.name.clone(), schedule);
        ready(Ok(()))
    }

    fn schedules(&self) -> BoxFuture<Result<Vec<crate::ScheduleRecord>>> {
        ready(Ok(self.lock().schedules.values().cloned().collect()))
    }

    fn remove_schedule(&self, name: String) -> BoxFuture<Result<()>> {
        let found = self.lock().schedules.remove(&name).is_some();
        ready(if found {
            Ok(())
        } else {
            Err(Error::NotFound(format!("schedule {name}")))
        })
    }

    fn fire_schedules(
        &self,
        now: weft_model::Millis,
        trigger: Option<String>,
    ) -> BoxFuture<Result<Vec<(String, PlanId)>>> {
        let mut inner = self.lock();
        if let Some(name) = &trigger {
            if !inner.schedules.contains_key(name) {
                return ready(Err(Error::NotFound(format!("schedule {name}"))));
            }
        }
        let names: Vec<String> = inner.schedules.keys().cloned().collect();
        let mut fired = Vec::new();
        for name in names {
            let Some(s) = inner.schedules.get(&name).cloned() else {
                continue;
            };
            let triggered = trigger.as_deref() == Some(name.as_str());
            let due = !s.paused && s.next_at.is_some_and(|t| t <= now);
            if !triggered && (trigger.is_some() || !due) {
                continue;
            }
            let runs = s
                .last_plan
                .and_then(|p| inner.plans.get(&p))
                .is_some_and(|e| e.plan.state != plan::State::Stopped);
            let (plans, next_at) = match crate::schedules::plans_for(&s, now, triggered, runs) {
                Ok(x) => x,
                Err(e) => return ready(Err(e)),
            };
            let mut last = s.last_plan;
            for p in plans {
                let id = p.id;
                if let Err(e) = insert_plan(&mut inner, p) {
                    return ready(Err(e));
                }
                fired.push((name.clone(), id));
                last = Some(id);
            }
            if let Some(s) = inner.schedules.get_mut(&name) {
                s.next_at = next_at;
                s.last_plan = last;
            }
        }
        ready(Ok(fired))
    }

    fn inhibit(&self, plan: PlanId) -> BoxFuture<Result<()>> {
        let mut inner = self.lock();
        if !inner.plans.contains_key(&plan) {
            return ready(Err(Error::NotFound(plan.to_string())));
        }
        inner.inhibited.insert(plan);
        ready(Ok(()))
    }

    fn is_inhibited(&self, plan: PlanId) -> BoxFuture<Result<bool>> {
        ready(Ok(self.lock().inhibited.contains(&plan)))
    }

    fn register_node(&self, node: NodeRecord) -> BoxFuture<Result<()>> {
        let mut inner = self.lock();
        inner.capabilities.extend(node.capabilities.iter().cloned());
        inner.nodes.insert(node.id.clone(), node);
        ready(Ok(()))
    }

    fn known_capabilities(&self) -> BoxFuture<Result<Vec<String>>> {
        ready(Ok(self.lock().capabilities.iter().cloned().collect()))
    }

    fn heartbeat(&self, node: String, at: weft_model::Millis) -> BoxFuture<Result<()>> {
        ready(match self.lock().nodes.get_mut(&node) {
            Some(n) => {
                n.heartbeat_at = at;
                Ok(())
            }
            None => Err(Error::NotFound(format!("node {node}"))),
        })
    }

    fn nodes(&self) -> BoxFuture<Result<Vec<NodeRecord>>> {
        ready(Ok(self.lock().nodes.values().cloned().collect()))
    }

    fn invalidate_node(&self, node: String) -> BoxFuture<Result<Vec<PlanId>>> {
        let mut inner = self.lock();
        inner.nodes.remove(&node);
        inner.jobs.lose_claims(&node);
        inner.slots.drop_owner(&node);
        let released: Vec<PlanId> = inner
            .locks
            .iter()
            .filter(|(_, owner)| **owner == node)
            .map(|(p, _)| *p)
            .collect();
        for p in &released {
            inner.locks.remove(p);
        }
        ready(Ok(released))
    }

    fn lock_holders(&self) -> BoxFuture<Result<Vec<String>>> {
        let inner = self.lock();
        let mut holders: Vec<String> = inner.locks.values().cloned().collect();
        holders.sort();
        holders.dedup();
        ready(Ok(holders))
    }

    fn release_locks(&self, owner: String) -> BoxFuture<Result<Vec<PlanId>>> {
        let mut inner = self.lock();
        inner.slots.drop_owner(&owner);
        let released: Vec<PlanId> = inner
            .locks
            .iter()
            .filter(|(_, o)| **o == owner)
            .map(|(p, _)| *p)
            .collect();
        for p in &released {
            inner.locks.remove(p);
        }
        ready(Ok(released))
    }

    fn set_node_report(&self, node: String, report: serde_json::Value) -> BoxFuture<Result<()>> {
        ready(match self.lock().nodes.get_mut(&node) {
            Some(n) => {
                n.report = Some(report);
                Ok(())
            }
            None => Err(Error::NotFound(format!("node {node}"))),
        })
    }

    fn check(&self) -> BoxFuture<Result<()>> {
        ready(Ok(()))
    }

    fn claim_plans(
        &self,
        owner: String,
        limit: u32,
        can_run: Vec<String>,
    ) -> BoxFuture<Result<Vec<PlanId>>> {
        let mut inner = self.lock();
        let of_jobs: HashSet<PlanId> = inner.jobs.jobs.values().map(|j| j.plan).collect();
        let mut waiting: Vec<PlanId> = inner
            .plans
            .values()
            .filter(|e| matches!(e.plan.state, plan::State::Planned | plan::State::Running))
            .filter(|e| e.needs.iter().all(|n| can_run.contains(n)))
            .map(|e| e.plan.id)
            .filter(|id| !inner.locks.contains_key(id) && !inner.inhibited.contains(id))
            .filter(|id| !of_jobs.contains(id))
            .collect();
        waiting.sort();
        waiting.truncate(limit as usize);
        for id in &waiting {
            inner.locks.insert(*id, owner.clone());
        }
        ready(Ok(waiting))
    }

    fn promote_due(&self, by: &str, now: weft_model::Millis) -> BoxFuture<Result<Vec<Due>>> {
        let by: Arc<str> = Arc::from(by);
        let mut inner = self.lock();
        let mut scheduled: Vec<PlanId> = inner
            .plans
            .values()
            .filter(|e| {
                e.plan.state == plan::State::Scheduled && e.plan.start_at.is_none_or(|t| t <= now)
            })
            .map(|e| e.plan.id)
            .collect();
        scheduled.sort();
        let mut out = Vec::new();
        for id in scheduled {
            let found = inner.plans[&id].plan.after.iter().map(|p| {
                let state = inner.plans.get(p).map(|e| {
                    let outcome =
                        Outcome::derive(e.steps.iter().map(|s| (s.state, s.warning.is_some())));
                    (e.plan.state, outcome)
                });
                (*p, state)
            });
            match judge_prerequisites(found.collect::<Vec<_>>()) {
                Readiness::Failed(prerequisite) => out.push(Due::FailedDependency {
                    plan: id,
                    prerequisite,
                }),
                Readiness::Waiting => {}
                Readiness::Ready => {
                    for c in promotion(id, now) {
                        inner.apply(&by, c);
                    }
                    out.push(Due::Ready(id));
                }
            }
        }
        ready(Ok(out))
    }

    fn post(&self, plan: PlanId, instruction: Instruction) -> BoxFuture<Result<i64>> {
        let mut inner = self.lock();
        if !inner.plans.contains_key(&plan) {
            return ready(Err(Error::NotFound(plan.to_string())));
        }
        let id = inner.mailbox.len() as i64 + 1;
        let message = Message {
            id,
            plan,
            instruction,
            created_at: weft_model::now_millis(),
        };
        inner.mailbox.push((message, Reply::Pending));
        ready(Ok(id))
    }

    fn inbox(&self, owner: String) -> BoxFuture<Result<Vec<Message>>> {
        let inner = self.lock();
        ready(Ok(inner
            .mailbox
            .iter()
            .filter(|(m, r)| *r == Reply::Pending && inner.locks.get(&m.plan) == Some(&owner))
            .map(|(m, _)| m.clone())
            .collect()))
    }

    fn reply(&self, id: i64, reply: Reply) -> BoxFuture<Result<bool>> {
        let mut inner = self.lock();
        ready(match inner.mailbox.get_mut((id - 1) as usize) {
            Some((_, r)) if *r == Reply::Pending => {
                *r = reply;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(Error::NotFound(format!("message {id}"))),
        })
    }

    fn reply_of(&self, id: i64) -> BoxFuture<Result<Reply>> {
        let inner = self.lock();
        ready(
            inner
                .mailbox
                .get((id - 1).max(0) as usize)
                .map(|(_, r)| r.clone())
                .ok_or_else(|| Error::NotFound(format!("message {id}"))),
        )
    }

    fn post_job(&self, job: NewJob) -> BoxFuture<Result<JobRecord>> {
        ready(self.lock().jobs.post(&job))
    }

    fn job(&self, id: JobId) -> BoxFuture<Result<JobRecord>> {
        ready(self.lock().jobs.get(id).cloned())
    }

    fn resolve_job(&self, text: String) -> BoxFuture<Result<JobId>> {
        let found = crate::jobs::check_prefix(&text).and_then(|()| {
            let prefix = text.to_ascii_lowercase();
            let ids: Vec<String> = self
                .lock()
                .jobs
                .jobs
                .keys()
                .map(|id| id.to_string())
                .filter(|id| id.starts_with(&prefix))
                .take(2)
                .collect();
            crate::jobs::resolved(&text, ids)
        });
        ready(found)
    }

    fn list_jobs(&self, filter: JobFilter) -> BoxFuture<Result<Vec<JobRecord>>> {
        let inner = self.lock();
        let mut jobs: Vec<JobRecord> = inner
            .jobs
            .jobs
            .values()
            .filter(|j| filter.admits_job(j))
            .cloned()
            .collect();
        jobs.sort_by_key(crate::jobs::claim_order);
        if let Some(limit) = filter.limit {
            jobs.truncate(limit as usize);
        }
        ready(Ok(jobs))
    }

    fn count_jobs(&self, filter: JobFilter) -> BoxFuture<Result<u64>> {
        let inner = self.lock();
        let n = inner
            .jobs
            .jobs
            .values()
            .filter(|j| filter.admits_job(j))
            .count();
        ready(Ok(n as u64))
    }

    fn claim_job(&self, id: JobId, who: String) -> BoxFuture<Result<JobRecord>> {
        ready(self.lock().jobs.claim(id, &who))
    }

    fn claim_jobs(
        &self,
        who: String,
        limit: u32,
        can_run: Vec<String>,
    ) -> BoxFuture<Result<Vec<JobRecord>>> {
        ready(self.lock().jobs.claim_many(&who, limit, &can_run))
    }

    fn claim_jobs_to_run(
        &self,
        who: String,
        limit: u32,
        can_run: Vec<String>,
    ) -> BoxFuture<Result<Vec<ClaimedJob>>> {
        let mut inner = self.lock();
        let claimed = match inner.jobs.claim_many(&who, limit, &can_run) {
            Ok(jobs) => jobs,
            Err(e) => return ready(Err(e)),
        };
        let mut out = Vec::with_capacity(claimed.len());
        for job in claimed {
            let plan_created = match insert_plan(&mut inner, job.plan_to_run(&who)) {
                Ok(()) => true,
                // An earlier claim's, to resume.
                Err(Error::Exists(_)) => false,
                Err(e) => return ready(Err(e)),
            };
            let plan_started = plan_created && job.starts_with_claim();
            if plan_started {
                inner.apply(&Arc::from(who.as_str()), job.plan_start());
            }
            out.push(ClaimedJob {
                job,
                plan_created,
                plan_started,
            });
        }
        ready(Ok(out))
    }

    fn release_job(
        &self,
        id: JobId,
        who: String,
        attempt: Option<u32>,
        how: job::Release,
    ) -> BoxFuture<Result<JobRecord>> {
        ready(self.lock().jobs.release(id, &who, attempt, how))
    }

    fn retry_job(&self, id: JobId, by: String) -> BoxFuture<Result<JobRecord>> {
        let mut inner = self.lock();
        let retried = inner.jobs.retry(id, &by).map(|(job, old)| {
            // The old plan, no longer the job's, must not be claimed by a node as a plain plan.
            if inner
                .plans
                .get(&old)
                .is_some_and(|e| e.plan.state != plan::State::Stopped)
            {
                inner.inhibited.insert(old);
            }
            job
        });
        ready(retried)
    }

    fn job_history(&self, id: JobId) -> BoxFuture<Result<Vec<JobTransition>>> {
        let inner = self.lock();
        ready(
            inner
                .jobs
                .get(id)
                .map(|_| inner.jobs.history.get(&id).cloned().unwrap_or_default()),
        )
    }

    fn register_entity(&self, entity: Entity) -> BoxFuture<Result<()>> {
        ready(crate::jobs::check_entity(&entity).map(|()| {
            self.lock()
                .jobs
                .entities
                .insert((entity.kind.clone(), entity.name.clone()), entity);
        }))
    }

    fn entities(&self) -> BoxFuture<Result<Vec<Entity>>> {
        ready(Ok(self.lock().jobs.entities.values().cloned().collect()))
    }

    fn send_messages(&self, messages: Vec<WireMessage>) -> BoxFuture<Result<()>> {
        let mut inner = self.lock();
        for m in messages {
            inner
                .messages
                .entry(m.topic.clone())
                .or_default()
                .push_back(m);
        }
        ready(Ok(()))
    }

    fn take_messages(&self, topic: String, limit: u32) -> BoxFuture<Result<Vec<WireMessage>>> {
        let mut inner = self.lock();
        let taken = match inner.messages.get_mut(&topic) {
            Some(queue) => {
                let n = queue.len().min(limit as usize);
                queue.drain(..n).collect()
            }
            None => Vec::new(),
        };
        ready(Ok(taken))
    }

    fn register_worker(&self, mut worker: WorkerRecord) -> BoxFuture<Result<()>> {
        worker.heartbeat_at = weft_model::now_millis();
        self.lock().workers.insert(worker.topic.clone(), worker);
        ready(Ok(()))
    }

    fn worker_heartbeat(&self, topic: String, running: u32) -> BoxFuture<Result<()>> {
        let mut inner = self.lock();
        ready(match inner.workers.get_mut(&topic) {
            Some(w) => {
                w.heartbeat_at = weft_model::now_millis();
                w.running = running;
                Ok(())
            }
            None => Err(Error::NotFound(format!("worker {topic}"))),
        })
    }

    fn workers(&self) -> BoxFuture<Result<Vec<WorkerRecord>>> {
        ready(Ok(self.lock().workers.values().cloned().collect()))
    }

    fn remove_worker(&self, topic: String) -> BoxFuture<Result<()>> {
        self.lock().workers.remove(&topic);
        ready(Ok(()))
    }

    fn write_logs(&self, write: crate::LogWrite) -> BoxFuture<Result<()>> {
        let mut inner = self.lock();
        if !write.drop.is_empty() {
            let drop: HashSet<(&crate::LogKey, u64)> =
                write.drop.iter().map(|(k, o)| (k, *o)).collect();
            inner
                .logs
                .retain(|_, c| !drop.contains(&(&c.key, c.offset)));
        }
        for chunk in write.append {
            inner.next_log += 1;
            let id = inner.next_log;
            inner.logs.insert(id, chunk);
        }
        ready(Ok(()))
    }

    fn read_logs(&self, query: crate::LogQuery) -> BoxFuture<Result<Vec<crate::LogRow>>> {
        let inner = self.lock();
        let limit = if query.limit == 0 {
            u32::MAX
        } else {
            query.limit
        } as usize;
        ready(Ok(inner
            .logs
            .range(query.after + 1..)
            .filter(|(id, c)| query.matches(**id, c))
            .take(limit)
            .map(|(id, c)| crate::LogRow {
                id: *id,
                chunk: c.clone(),
            })
            .collect()))
    }
}
