//! Slots: what a plan or a step under a concurrency limit or in a queue holds while it runs,
//! and queues' settings. The rules every backend applies inside the transaction that asks for
//! slots ([`verdict`], [`refill`]): a request waits in line in each scope it wants (one row per
//! scope, `seq` its place), and is granted all its slots at once when, in every scope, those
//! held plus those ahead of it leave room under the limit — and its queue has a token left.
//!
//! In a key's concurrency scope the line is first come, first served. In a queue the line is
//! fair across keys: a waiter's place is how many its key holds plus how many of its key wait
//! ahead of it, ties broken by arrival — one busy key cannot starve the others.
//!
//! A waiting row that its owner has not asked about for [`STALE`] ms is dropped (its owner is
//! gone); held rows go with the plan's or the step's end (`Change::Release`), with the owner's
//! locks when its lease lapses (`invalidate_node`, `release_locks`), or when another process
//! takes the plan over.

use crate::Millis;
use serde::Serialize;
use weft_model::limit::{Rate, SlotWant};
use weft_model::PlanId;

/// What a plan and its steps wait for in line, a line each: `waiting for a slot in flow
/// `send` for key `acme` (limit 2): 2 of 2 held, 1 ahead in line`, or `step NAME is waiting
/// for …`; `name` gives a step's name.
pub fn waits(rows: &[SlotRow], name: impl Fn(u32) -> Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in rows.iter().filter(|r| !r.held) {
        if !seen.insert(r.step) {
            continue;
        }
        let why = r
            .why
            .clone()
            .unwrap_or_else(|| format!("a slot in `{}`", r.scope));
        out.push(match r.step.and_then(&name) {
            Some(step) => format!("step {step} is waiting for {why}"),
            None => format!("waiting for {why}"),
        });
    }
    out
}

/// A waiting row not asked about for this long is dropped.
pub const STALE: Millis = 10_000;

/// Slots a plan (`step: None`) or one of its steps asks for, all at once.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotRequest {
    /// The plan.
    pub plan: PlanId,
    /// The step, or `None` for the plan's own slots.
    pub step: Option<u32>,
    /// Who asks: it must hold the plan's execution lock.
    pub owner: String,
    /// The slots.
    pub wants: Vec<SlotWant>,
}

/// What asking for slots found.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotAnswer {
    /// Every slot is held: go.
    Granted,
    /// Still in line.
    Waiting {
        /// What it waits for, in words ("a slot in flow `x` for key `a` (limit 2): 2 held").
        on: String,
        /// Ask again no sooner than this many ms (a rate's next token); 0: the asker's pace.
        retry: Millis,
    },
    /// The asker no longer holds the plan's lock: nothing was asked.
    Gone,
}

/// One row: a place in line, or a held slot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotRow {
    /// `flow:NAME`, `task:FLOW/STEP` or `queue:NAME`.
    pub scope: String,
    /// The rendered key.
    pub key: String,
    /// The plan.
    pub plan: PlanId,
    /// The step, or `None` for the plan's own.
    pub step: Option<u32>,
    /// Who asked.
    pub owner: String,
    /// Held, or waiting.
    pub held: bool,
    /// Place in arrival order.
    pub seq: i64,
    /// When it arrived (waiting) or was granted (held).
    pub since: Millis,
    /// What it waits for, as last found (waiting rows).
    pub why: Option<String>,
}

/// A queue's settings, and — when listed — what it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueRecord {
    /// Its name.
    pub name: String,
    /// At most this many held at once, across keys.
    pub limit: Option<u32>,
    /// At most this many grants per period.
    #[serde(serialize_with = "rate_text")]
    pub rate: Option<Rate>,
    /// Tokens left (the rate's bucket), as of `refilled_at`.
    #[serde(skip)]
    pub tokens: f64,
    /// When `tokens` was last brought up to date.
    #[serde(skip)]
    pub refilled_at: Millis,
    /// Slots held (listing only).
    pub held: u32,
    /// Requests waiting (listing only).
    pub waiting: u32,
}

fn rate_text<S: serde::Serializer>(rate: &Option<Rate>, s: S) -> Result<S::Ok, S::Error> {
    match rate {
        Some(r) => s.serialize_str(&r.to_string()),
        None => s.serialize_none(),
    }
}

impl QueueRecord {
    /// A queue with these settings and a full bucket.
    pub fn new(name: String, limit: Option<u32>, rate: Option<Rate>, now: Millis) -> Self {
        QueueRecord {
            name,
            limit,
            rate,
            tokens: rate.map_or(0.0, |r| f64::from(r.count)),
            refilled_at: now,
            held: 0,
            waiting: 0,
        }
    }
}

/// Brings a queue's bucket up to `now`.
pub fn refill(queue: &mut QueueRecord, now: Millis) {
    if let Some(rate) = queue.rate {
        let per = rate.per.as_millis().max(1) as f64;
        let elapsed = (now - queue.refilled_at).max(0) as f64;
        let cap = f64::from(rate.count);
        queue.tokens = (queue.tokens + elapsed * cap / per).min(cap);
    }
    queue.refilled_at = now;
}

/// Why a request cannot have a scope's slot yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    /// In words.
    pub why: String,
    /// Ask again no sooner than this (ms).
    pub retry: Millis,
}

/// Where a request stands in one scope's line: whether it holds its slot already, how many
/// slots are held (its key's in a concurrency scope, all in a queue), and how many go before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// Its row is held.
    pub mine_held: bool,
    /// Slots held that count against the limit.
    pub held: usize,
    /// Waiting rows that go first.
    pub ahead: usize,
}

impl Line {
    /// The line from a scope's live rows (held, and waiting rows not stale — `me` among
    /// them): first come, first served per key in a concurrency scope; fair across keys in a
    /// queue.
    pub fn of(want: &SlotWant, me: &SlotRow, rows: &[SlotRow]) -> Line {
        let same_line = want.queue().is_none();
        let rival = |r: &&SlotRow| !same_line || r.key == me.key;
        let held = rows.iter().filter(rival).filter(|r| r.held).count();
        let ahead = if same_line {
            rows.iter()
                .filter(rival)
                .filter(|r| !r.held && r.seq < me.seq)
                .count()
        } else {
            fair_rank(me, rows)
        };
        Line {
            mine_held: me.held,
            held,
            ahead,
        }
    }
}

/// Whether a request standing in `line` of `want`'s scope may be granted, given its queue's
/// settings (refilled to now), if it is a queue's scope.
pub fn verdict(want: &SlotWant, line: Line, queue: Option<&QueueRecord>) -> Result<(), Blocked> {
    if line.mine_held {
        return Ok(());
    }
    let Line { held, ahead, .. } = line;
    let limit = match want.queue() {
        Some(_) => queue.and_then(|q| q.limit),
        None => want.limit,
    };
    if let Some(limit) = limit {
        let limit = limit as usize;
        if held + ahead >= limit {
            return Err(Blocked {
                why: format!(
                    "a slot in {}: {held} of {limit} held, {ahead} ahead in line",
                    want.describe()
                ),
                retry: 0,
            });
        }
    }
    if let Some(q) = queue {
        if let Some(rate) = q.rate {
            let need = ahead as f64 + 1.0;
            if q.tokens < need {
                let per = rate.per.as_millis().max(1) as f64;
                let wait = ((need - q.tokens) * per / f64::from(rate.count)).ceil() as Millis;
                return Err(Blocked {
                    why: format!(
                        "a slot in {}: its rate ({rate}) is used up, {ahead} ahead in line",
                        want.describe()
                    ),
                    retry: wait.max(1),
                });
            }
        }
    }
    Ok(())
}

/// What the rows of every wanted scope say about a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Grant every slot; store these queues' buckets (a token taken from each).
    Grant(Vec<QueueRecord>),
    /// Keep waiting, for this reason, asking again no sooner than `retry` ms.
    Wait(Blocked),
}

/// Decides a request from, per want (in order), its line in the scope (`None`: it has no row
/// there, which cannot happen inside the transaction that wrote it) and the scope's queue (for
/// a queue's scope, if the queue has settings).
pub(crate) fn decide(
    req: &SlotRequest,
    scopes: Vec<(Option<Line>, Option<QueueRecord>)>,
    now: Millis,
) -> Decision {
    let mut buckets = Vec::new();
    let mut blocked: Option<Blocked> = None;
    for (want, (line, mut queue)) in req.wants.iter().zip(scopes) {
        let Some(line) = line else {
            continue;
        };
        if let Some(q) = queue.as_mut() {
            refill(q, now);
        }
        match verdict(want, line, queue.as_ref()) {
            Ok(()) => {
                if let Some(mut q) = queue.filter(|q| q.rate.is_some() && !line.mine_held) {
                    q.tokens -= 1.0;
                    buckets.push(q);
                }
            }
            Err(b) => {
                blocked = Some(match blocked {
                    Some(first) => Blocked {
                        retry: first.retry.max(b.retry),
                        ..first
                    },
                    None => b,
                });
            }
        }
    }
    match blocked {
        Some(b) => Decision::Wait(b),
        None => Decision::Grant(buckets),
    }
}

/// The step column's value for a request's step (`-1`: the plan's own slots).
pub(crate) fn step_column(step: Option<u32>) -> i64 {
    step.map_or(-1, i64::from)
}

/// A step column back as a step.
pub(crate) fn step_of_column(step: i64) -> Option<u32> {
    u32::try_from(step).ok()
}

/// Slots and queues in memory: the memory store's, with the rules the databases apply.
#[derive(Default)]
pub(crate) struct Table {
    /// Each with when its owner last asked.
    rows: Vec<(SlotRow, Millis)>,
    queues: std::collections::BTreeMap<String, QueueRecord>,
    seq: i64,
}

impl Table {
    /// Asks for `req`'s slots at `now`; `locked`: whether its owner holds the plan's lock.
    pub(crate) fn acquire(&mut self, req: &SlotRequest, now: Millis, locked: bool) -> SlotAnswer {
        if !locked {
            return SlotAnswer::Gone;
        }
        self.rows
            .retain(|(r, polled)| r.held || *polled >= now - STALE);
        for want in &req.wants {
            let mine = self
                .rows
                .iter_mut()
                .find(|(r, _)| r.plan == req.plan && r.step == req.step && r.scope == want.scope);
            match mine {
                Some((_, polled)) => *polled = now,
                None => {
                    self.seq += 1;
                    self.rows.push((
                        SlotRow {
                            scope: want.scope.clone(),
                            key: want.key.clone(),
                            plan: req.plan,
                            step: req.step,
                            owner: req.owner.clone(),
                            held: false,
                            seq: self.seq,
                            since: now,
                            why: None,
                        },
                        now,
                    ));
                }
            }
        }
        let scopes = req
            .wants
            .iter()
            .map(|w| {
                let rows: Vec<SlotRow> = self
                    .rows
                    .iter()
                    .filter(|(r, _)| r.scope == w.scope)
                    .map(|(r, _)| r.clone())
                    .collect();
                let line = rows
                    .iter()
                    .find(|r| r.plan == req.plan && r.step == req.step)
                    .map(|me| Line::of(w, me, &rows));
                (line, w.queue().and_then(|q| self.queues.get(q).cloned()))
            })
            .collect();
        let decision = decide(req, scopes, now);
        let mine = |r: &SlotRow| r.plan == req.plan && r.step == req.step;
        match decision {
            Decision::Grant(buckets) => {
                for (r, _) in self.rows.iter_mut().filter(|(r, _)| mine(r)) {
                    if !r.held {
                        r.held = true;
                        r.since = now;
                        r.why = None;
                    }
                }
                for q in buckets {
                    self.queues.insert(q.name.clone(), q);
                }
                SlotAnswer::Granted
            }
            Decision::Wait(b) => {
                for (r, _) in self.rows.iter_mut().filter(|(r, _)| mine(r)) {
                    r.why = Some(b.why.clone());
                }
                SlotAnswer::Waiting {
                    on: b.why,
                    retry: b.retry,
                }
            }
        }
    }

    /// Gives back a step's slots, or all of a plan's.
    pub(crate) fn release(&mut self, plan: PlanId, step: Option<u32>) {
        self.rows
            .retain(|(r, _)| !(r.plan == plan && (step.is_none() || r.step == step)));
    }

    /// Drops every row of an owner (its lease lapsed, or it let its locks go).
    pub(crate) fn drop_owner(&mut self, owner: &str) {
        self.rows.retain(|(r, _)| r.owner != owner);
    }

    /// A plan's rows.
    pub(crate) fn of(&self, plan: PlanId) -> Vec<SlotRow> {
        self.rows
            .iter()
            .filter(|(r, _)| r.plan == plan)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Sets a queue (its bucket full).
    pub(crate) fn put_queue(&mut self, q: QueueRecord) {
        self.queues.insert(q.name.clone(), q);
    }

    /// Every queue, with what it holds.
    pub(crate) fn queues(&self) -> Vec<QueueRecord> {
        self.queues
            .values()
            .map(|q| {
                let scope = format!("queue:{}", q.name);
                let of = |held: bool| {
                    self.rows
                        .iter()
                        .filter(|(r, _)| r.scope == scope && r.held == held)
                        .count() as u32
                };
                QueueRecord {
                    held: of(true),
                    waiting: of(false),
                    ..q.clone()
                }
            })
            .collect()
    }

    /// Deletes a queue's settings.
    pub(crate) fn remove_queue(&mut self, name: &str) -> crate::Result<()> {
        self.queues
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| crate::Error::NotFound(format!("no queue `{name}`")))
    }
}

/// How many waiting rows of a queue go before `me`: each waiter's place is what its key holds
/// plus its key's waiters ahead of it; ties by arrival.
fn fair_rank(me: &SlotRow, rows: &[SlotRow]) -> usize {
    use std::collections::HashMap;
    let mut held: HashMap<&str, usize> = HashMap::new();
    for r in rows.iter().filter(|r| r.held) {
        *held.entry(r.key.as_str()).or_default() += 1;
    }
    let mut waiting: Vec<&SlotRow> = rows.iter().filter(|r| !r.held).collect();
    waiting.sort_by_key(|r| r.seq);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut places: Vec<(usize, i64)> = Vec::with_capacity(waiting.len());
    let mut mine = None;
    for r in waiting {
        let n = seen.entry(r.key.as_str()).or_default();
        let place = (held.get(r.key.as_str()).copied().unwrap_or(0) + *n, r.seq);
        *n += 1;
        if r.seq == me.seq {
            mine = Some(place);
        }
        places.push(place);
    }
    let Some(mine) = mine else { return 0 };
    places.iter().filter(|p| **p < mine).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn row(key: &str, held: bool, seq: i64) -> SlotRow {
        SlotRow {
            scope: "s".into(),
            key: key.into(),
            plan: PlanId::new(),
            step: None,
            owner: "n".into(),
            held,
            seq,
            since: 0,
            why: None,
        }
    }

    fn want(limit: Option<u32>, queue: bool) -> SlotWant {
        SlotWant {
            scope: if queue {
                "queue:q".into()
            } else {
                "flow:f".into()
            },
            key: "a".into(),
            limit,
        }
    }

    #[test]
    fn a_key_line_is_first_come_first_served_under_its_limit() {
        let rows = vec![row("a", true, 1), row("a", false, 2), row("a", false, 3)];
        let w = want(Some(2), false);
        assert!(verdict(&w, Line::of(&w, &rows[1], &rows), None).is_ok());
        let e = verdict(&w, Line::of(&w, &rows[2], &rows), None).unwrap_err();
        assert_eq!(
            e.why,
            "a slot in flow `f` for key `a` (limit 2): 1 of 2 held, 1 ahead in line"
        );
        // Another key's rows do not count.
        let rows = vec![row("b", true, 1), row("b", true, 2), row("a", false, 3)];
        assert!(verdict(&w, Line::of(&w, &rows[2], &rows), None).is_ok());
    }

    #[test]
    fn a_queue_is_fair_across_keys() {
        // Key a holds one and has three waiting; b's first waiter arrived last.
        let rows = vec![
            row("a", true, 1),
            row("a", false, 2),
            row("a", false, 3),
            row("a", false, 4),
            row("b", false, 5),
        ];
        let q = QueueRecord::new("q".into(), Some(2), None, 0);
        let w = want(None, true);
        // b goes first (place 0), then a's first (place 1): with one free slot, only b.
        assert!(verdict(&w, Line::of(&w, &rows[4], &rows), Some(&q)).is_ok());
        assert!(verdict(&w, Line::of(&w, &rows[1], &rows), Some(&q)).is_err());
        assert_eq!(fair_rank(&rows[1], &rows), 1);
        assert_eq!(fair_rank(&rows[3], &rows), 3);
    }

    #[test]
    fn a_rate_hands_out_tokens_and_says_when_the_next_comes() {
        let mut q = QueueRecord::new(
            "q".into(),
            None,
            Some(Rate {
                count: 2,
                per: Duration::from_secs(1),
            }),
            0,
        );
        let rows = vec![row("a", false, 1), row("a", false, 2), row("a", false, 3)];
        let w = want(None, true);
        assert!(verdict(&w, Line::of(&w, &rows[1], &rows), Some(&q)).is_ok());
        let e = verdict(&w, Line::of(&w, &rows[2], &rows), Some(&q)).unwrap_err();
        assert_eq!(e.retry, 500);
        assert!(e.why.contains("rate (2/s) is used up"), "{}", e.why);
        q.tokens = 0.0;
        refill(&mut q, 250);
        assert!((q.tokens - 0.5).abs() < 1e-9);
        refill(&mut q, 10_000);
        assert!((q.tokens - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_queue_without_settings_never_blocks() {
        let rows = vec![row("a", true, 1), row("a", false, 2)];
        let w = want(None, true);
        assert!(verdict(&w, Line::of(&w, &rows[1], &rows), None).is_ok());
    }
}
