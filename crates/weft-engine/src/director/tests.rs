//! The director, driven without a store, a clock or processes: a harness plays executor and
//! store, checking that every change the director emits starts from the state it last set.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use weft_model::flow::{Action, Command, FlowBuilder, Retry};
use weft_model::step::State as S;
use weft_store::{NewPlan, PlanRecord, StepRecord};

struct Harness {
    director: Director,
    plan: PlanRecord,
    steps: Vec<StepRecord>,
    /// Work handed out and not yet answered.
    work: Vec<WorkItem>,
    timers: Vec<Input>,
    ended: Option<PlanEnd>,
    refused: Option<String>,
    /// Answers to events and halts.
    answers: Vec<Result<(), String>>,
    /// Steps whose processes the director asked to kill.
    kills: Vec<(PlanId, u32)>,
    now: Millis,
    /// Every execution started, by step name, in order.
    log: Vec<String>,
    /// Slots asked for and not yet granted.
    asks: Vec<SlotAsk>,
    /// Slots given back: a step's, or `None` for all of the plan's.
    released: Vec<Option<u32>>,
}

impl Harness {
    fn new(flow: Flow, limit: usize) -> Self {
        let new = NewPlan::new(flow, BTreeMap::new());
        let (plan, steps) = new.records();
        Harness {
            director: Director::new(limit, 7),
            plan,
            steps,
            work: Vec::new(),
            timers: Vec::new(),
            ended: None,
            refused: None,
            answers: Vec::new(),
            kills: Vec::new(),
            now: 0,
            log: Vec::new(),
            asks: Vec::new(),
            released: Vec::new(),
        }
    }

    fn start(&mut self, rescue: Rescue) {
        self.start_with(rescue, Intent::Run, false);
    }

    fn start_with(&mut self, rescue: Rescue, intent: Intent, inhibited: bool) {
        let snapshot = PlanSnapshot {
            plan: self.plan.clone(),
            steps: self.steps.clone(),
        };
        self.feed(Input::Start {
            create: None,
            started: false,
            snapshot: Box::new(snapshot),
            rescue,
            intent,
            inhibited,
            waiter: None,
        });
    }

    /// A new director takes the stored plan, as after a crash or a restart.
    fn restart(&mut self, rescue: Rescue) {
        self.work.clear();
        self.timers.clear();
        self.director = Director::new(8, 7);
        self.start(rescue);
    }

    /// Feeds one input and applies what comes out, as the store and dispatcher would.
    fn feed(&mut self, input: Input) {
        self.now += 1;
        self.director.handle(input, self.now);
        let actions = self.director.take();
        assert!(
            actions.illegal.is_empty(),
            "illegal transitions: {:?}",
            actions.illegal
        );
        for c in actions.changes {
            match c {
                Change::Plan { from, to, .. } => {
                    assert_eq!(self.plan.state, from, "plan change from a stale state");
                    self.plan.state = to;
                }
                Change::Step { from, step, .. } => {
                    let cur = &mut self.steps[step.index as usize];
                    assert_eq!(
                        cur.state, from,
                        "step {} change from a stale state",
                        cur.name
                    );
                    assert!(from.allows(step.state));
                    let name = cur.name.clone();
                    *cur = StepRecord { name, ..step };
                }
                Change::Group { step, progress, .. } => {
                    let cur = &mut self.steps[step as usize];
                    assert_eq!(
                        cur.state,
                        weft_model::step::State::Running,
                        "group progress of a stopped step"
                    );
                    cur.group = Some(progress);
                }
                Change::Bookkeeping { bookkeeping, .. } => self.plan.bookkeeping = bookkeeping,
                Change::Release { step, .. } => self.released.push(step),
                Change::Reply { .. } | Change::Unlock { .. } => {
                    panic!("the director writes no replies or unlocks (the shell does)")
                }
            }
        }
        for w in &actions.work {
            // The invariant of ordering: no step starts unless every step it depends on has
            // succeeded at that moment.
            if matches!(w.work, Work::Execute) {
                for &d in &self.plan.flow.steps[w.step as usize].deps {
                    assert_eq!(
                        self.steps[d as usize].state,
                        S::Success,
                        "{} started while its dependency {} is {:?}",
                        self.steps[w.step as usize].name,
                        self.steps[d as usize].name,
                        self.steps[d as usize].state
                    );
                }
            }
            if matches!(w.work, Work::Execute) {
                self.log.push(self.steps[w.step as usize].name.clone());
            } else {
                self.log
                    .push(format!("revert {}", self.steps[w.step as usize].name));
            }
        }
        self.work.extend(actions.work);
        self.timers
            .extend(actions.timers.into_iter().map(|t| t.input));
        if let Some((end, _)) = actions.ended.into_iter().next() {
            self.ended = Some(end);
        }
        self.answers
            .extend(actions.answers.into_iter().map(|(_, r)| r));
        self.kills.extend(actions.kill);
        self.asks.extend(actions.slots);
        if let Some((_, reason, _)) = actions.refused.into_iter().next() {
            self.refused = Some(reason.to_string());
        }
    }

    /// Answers work item `k` (by position) with `ok`.
    fn answer(&mut self, k: usize, ok: bool) {
        let item = self.work.remove(k);
        let input = match item.work {
            Work::Execute => Input::Executed {
                plan: item.plan,
                step: item.step,
                attempt: item.attempt,
                result: if ok {
                    Ok(Completion::Done {
                        output: serde_json::json!({"v": item.step}),
                        warning: None,
                    })
                } else {
                    Err(Failure::new("boom", "failed"))
                },
            },
            Work::Revert { .. } => Input::Reverted {
                plan: item.plan,
                step: item.step,
                result: if ok {
                    Ok(())
                } else {
                    Err(Failure::new("boom", "revert failed"))
                },
            },
        };
        self.feed(input);
    }

    /// Runs until nothing is left, answering with `decide(step name, is_revert)`.
    fn run(&mut self, mut decide: impl FnMut(&str, bool) -> bool) {
        for _ in 0..10_000 {
            if let Some(item) = self.work.first() {
                let name = self.steps[item.step as usize].name.clone();
                let ok = decide(&name, matches!(item.work, Work::Revert { .. }));
                self.answer(0, ok);
            } else if !self.timers.is_empty() {
                let t = self.timers.remove(0);
                self.feed(t);
            } else {
                return;
            }
        }
        panic!("the plan never settled");
    }

    fn state_of(&self, name: &str) -> S {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.state)
            .expect("step exists")
    }
}

fn with_reverts(mut flow: Flow) -> Flow {
    for s in flow.steps.iter_mut().filter(|s| s.action != Action::Gate) {
        s.action = Action::Command(Command {
            run: vec!["true".into()],
            revert: Some(vec!["true".into()]),
            env: BTreeMap::new(),
            cwd: None,
            warn_exit_codes: Vec::new(),
        });
    }
    flow
}

fn linear(n: usize) -> Flow {
    let mut b = FlowBuilder::linear("linear");
    for i in 0..n {
        b = b.task(format!("s{i}"), "noop", "1", |t| t);
    }
    b.build().expect("valid")
}

#[test]
fn a_linear_flow_runs_in_order_and_succeeds() {
    let mut h = Harness::new(linear(4), 8);
    h.start(Rescue::Revert);
    assert_eq!(h.work.len(), 1, "only the first step is ready");
    h.run(|_, _| true);
    assert_eq!(h.log, ["s0", "s1", "s2", "s3"]);
    let end = h.ended.clone().expect("ended");
    assert_eq!(
        (end.state, end.outcome),
        (plan::State::Stopped, Outcome::Success)
    );
}

#[test]
fn parallelism_bounds_the_work_in_flight() {
    let flow = FlowBuilder::unordered("u")
        .task("a", "noop", "1", |t| t)
        .task("b", "noop", "1", |t| t)
        .task("c", "noop", "1", |t| t)
        .build()
        .expect("valid");
    let mut h = Harness::new(flow, 2);
    h.start(Rescue::Revert);
    assert_eq!(h.work.len(), 2);
    h.answer(0, true);
    assert_eq!(h.work.len(), 2, "a freed slot is refilled");
}

#[test]
fn a_failure_reverts_completed_steps_in_reverse_order() {
    let mut h = Harness::new(with_reverts(linear(4)), 8);
    h.start(Rescue::Revert);
    h.run(|name, revert| revert || name != "s3");
    assert_eq!(
        h.log,
        [
            "s0",
            "s1",
            "s2",
            "s3",
            "revert s2",
            "revert s1",
            "revert s0"
        ]
    );
    let end = h.ended.clone().expect("ended");
    assert_eq!(
        (end.state, end.outcome),
        (plan::State::Stopped, Outcome::Error)
    );
    assert_eq!(h.state_of("s3"), S::Error);
    assert_eq!(h.state_of("s0"), S::Reverted);
}

#[test]
fn running_siblings_finish_before_the_revert_starts() {
    let flow = with_reverts(
        FlowBuilder::unordered("u")
            .task("a", "noop", "1", |t| t)
            .task("b", "noop", "1", |t| t)
            .build()
            .expect("valid"),
    );
    let mut h = Harness::new(flow, 8);
    h.start(Rescue::Revert);
    assert_eq!(h.work.len(), 2);
    h.answer(0, false); // a fails while b runs
    assert!(
        h.work.iter().all(|w| matches!(w.work, Work::Execute)),
        "no revert while b runs"
    );
    h.answer(0, true); // b succeeds, and is then reverted
    assert!(matches!(h.work[0].work, Work::Revert { .. }));
    h.run(|_, _| true);
    assert_eq!(h.state_of("b"), S::Reverted);
}

#[test]
fn a_failing_revert_pauses_the_plan_and_a_resume_retries_it() {
    let mut h = Harness::new(with_reverts(linear(3)), 8);
    h.start(Rescue::Revert);
    // s2 fails; then s1's revert fails.
    h.run(|name, revert| !matches!((name, revert), ("s2", false) | ("s1", true)));
    let end = h.ended.take().expect("ended");
    assert_eq!(end.state, plan::State::Paused);
    assert_eq!(h.state_of("s1"), S::RevertFailed);
    assert_eq!(
        h.state_of("s0"),
        S::Success,
        "s0 waits behind the failed revert"
    );
    // The operator resumes: the revert is retried, then the rest is reverted.
    h.director = Director::new(8, 7);
    h.start(Rescue::Revert);
    h.run(|_, _| true);
    let end = h.ended.clone().expect("ended");
    assert_eq!(
        (end.state, end.outcome),
        (plan::State::Stopped, Outcome::Error)
    );
    assert_eq!(h.state_of("s0"), S::Reverted);
}

#[test]
fn retries_wait_for_their_timer_then_run_again() {
    let flow = FlowBuilder::linear("r")
        .task("flaky", "noop", "1", |t| {
            t.retry(Retry {
                attempts: 3,
                ..Retry::default()
            })
        })
        .build()
        .expect("valid");
    let mut h = Harness::new(flow, 8);
    h.start(Rescue::Revert);
    h.answer(0, false);
    assert!(
        h.work.is_empty() && h.timers.len() == 1,
        "a retry waits for its delay"
    );
    let t = h.timers.remove(0);
    h.feed(t);
    assert_eq!(h.work[0].attempt, 2);
    h.answer(0, false);
    let t = h.timers.remove(0);
    h.feed(t);
    assert_eq!(h.work[0].attempt, 3);
    h.answer(0, true);
    assert_eq!(h.ended.expect("ended").outcome, Outcome::Success);
}

#[test]
fn pause_rescue_pauses_with_the_failure() {
    let mut h = Harness::new(linear(2), 8);
    h.start(Rescue::Pause);
    h.answer(0, false);
    let end = h.ended.clone().expect("ended");
    assert_eq!(
        (end.state, end.outcome),
        (plan::State::Paused, Outcome::Error)
    );
    assert_eq!(end.failure.map(|f| f.message), Some("failed".into()));
}

#[test]
fn after_a_crash_an_idempotent_running_step_reruns_with_the_same_attempt() {
    let mut h = Harness::new(linear(2), 8);
    h.start(Rescue::Revert);
    assert_eq!(h.work[0].attempt, 1);
    // The process dies: its work is lost; a new director takes the stored plan.
    h.work.clear();
    h.director = Director::new(8, 7);
    h.start(Rescue::Revert);
    assert_eq!(h.work.len(), 1);
    assert_eq!(h.work[0].attempt, 1, "same attempt");
    h.run(|_, _| true);
    assert_eq!(h.ended.expect("ended").outcome, Outcome::Success);
}

#[test]
fn after_a_crash_a_non_idempotent_running_step_errors_and_the_plan_pauses() {
    let flow = FlowBuilder::linear("n")
        .task("once", "noop", "1", |t| t.idempotent(false))
        .build()
        .expect("valid");
    let mut h = Harness::new(flow, 8);
    h.start(Rescue::Revert);
    h.work.clear();
    h.director = Director::new(8, 7);
    h.start(Rescue::Revert);
    assert!(h.work.is_empty(), "not re-run");
    let end = h.ended.take().expect("ended");
    assert_eq!(end.state, plan::State::Paused);
    assert_eq!(h.state_of("once"), S::Error);
    assert!(end
        .failure
        .expect("failure")
        .message
        .contains("abnormal termination"));
    // An operator's resume re-runs it.
    h.director = Director::new(8, 7);
    h.start(Rescue::Revert);
    assert_eq!(h.work.len(), 1);
    h.run(|_, _| true);
    assert_eq!(h.ended.expect("ended").outcome, Outcome::Success);
}

#[test]
fn a_stopped_plan_is_refused_with_dynflows_message() {
    let mut h = Harness::new(linear(1), 8);
    h.start(Rescue::Revert);
    h.run(|_, _| true);
    h.director = Director::new(8, 7);
    h.start(Rescue::Revert);
    assert!(h.refused.expect("refused").ends_with("it's stopped"));
}

#[test]
fn a_plan_already_running_is_refused() {
    let mut h = Harness::new(linear(2), 8);
    h.start(Rescue::Revert);
    h.plan.state = plan::State::Planned;
    h.start(Rescue::Revert);
    assert!(h
        .refused
        .expect("refused")
        .ends_with("it's already running"));
}

/// Regression (issue 11): after the subflow was reverted and restarted, `last` kept its count
/// of unfinished dependencies from the first attempt and started with the subflow's second
/// attempt; the harness's ordering check fails that.
#[test]
fn a_failed_subflow_is_reverted_and_run_again() {
    let inner = FlowBuilder::linear("inner")
        .task("x", "noop", "1", |t| t)
        .task("y", "noop", "1", |t| t);
    let flow = FlowBuilder::linear("outer")
        .task("first", "noop", "1", |t| t)
        .subflow("sub", inner, |t| {
            t.retry(Retry {
                attempts: 2,
                ..Retry::default()
            })
        })
        .task("last", "noop", "1", |t| t)
        .build()
        .expect("valid");
    let mut h = Harness::new(flow, 8);
    h.start(Rescue::Revert);
    let mut failed_once = false;
    h.run(|name, _| {
        if name == "sub/y" && !failed_once {
            failed_once = true;
            return false;
        }
        true
    });
    assert_eq!(
        h.log,
        [
            "first",
            "sub/x",
            "sub/y",
            "revert sub/x",
            "sub/x",
            "sub/y",
            "last"
        ]
    );
    assert_eq!(h.ended.expect("ended").outcome, Outcome::Success);
}

/// A random DAG: step i may depend on any earlier step.
fn random_flow(edges: &[(usize, usize)], n: usize, attempts: &[u32]) -> Flow {
    let mut b = FlowBuilder::graph("random");
    for i in 0..n {
        let after: Vec<String> = edges
            .iter()
            .filter(|(a, b)| *b == i && *a < i)
            .map(|(a, _)| format!("s{a}"))
            .collect();
        let retry = Retry {
            attempts: attempts[i % attempts.len()],
            ..Retry::default()
        };
        b = b.task(format!("s{i}"), "noop", "1", move |t| {
            t.after(after).retry(retry)
        });
    }
    with_reverts(b.build().expect("valid"))
}

proptest! {
    /// Random flows, random failures, random completion order: the director never takes an
    /// illegal transition, never emits a change from a stale state (checked by the harness),
    /// and always settles in a state that agrees with the steps.
    #[test]
    fn random_runs_settle_consistently(
        n in 1usize..10,
        edges in proptest::collection::vec((0usize..10, 0usize..10), 0..20),
        attempts in proptest::collection::vec(1u32..3, 1..4),
        outcomes in proptest::collection::vec(proptest::bool::weighted(0.8), 64),
        picks in proptest::collection::vec(0usize..8, 64),
        limit in 1usize..4,
        rescue_pause in proptest::bool::ANY,
    ) {
        let mut h = Harness::new(random_flow(&edges, n, &attempts), limit);
        h.start(if rescue_pause { Rescue::Pause } else { Rescue::Revert });
        let mut k = 0;
        for _ in 0..10_000 {
            if !h.work.is_empty() {
                let pick = picks[k % picks.len()] % h.work.len();
                let ok = outcomes[k % outcomes.len()];
                k += 1;
                h.answer(pick, ok);
            } else if !h.timers.is_empty() {
                let t = h.timers.remove(0);
                h.feed(t);
            } else {
                break;
            }
        }
        let end = h.ended.clone().expect("the plan settled");
        let states: Vec<S> = h.steps.iter().map(|s| s.state).collect();
        prop_assert_eq!(end.outcome, Outcome::derive(states.iter().map(|&s| (s, false))));
        prop_assert!(!states.contains(&S::Running) && !states.contains(&S::Reverting));
        match (end.state, end.outcome) {
            (plan::State::Stopped, Outcome::Success) => prop_assert!(states.iter().all(|s| *s == S::Success)),
            (plan::State::Stopped, Outcome::Error) => {
                prop_assert!(!rescue_pause);
                prop_assert!(!states.contains(&S::Success), "everything completed was reverted");
            }
            (plan::State::Paused, _) => prop_assert!(states.contains(&S::Error) || states.contains(&S::RevertFailed)),
            other => prop_assert!(false, "unexpected end {:?}", other),
        }
    }
}

/// A random DAG of tasks and linear subflows (`subflows[i]` > 0: item i is a subflow of that
/// many tasks), each with a random retry budget and the plan with a random rescue.
fn random_flow_with_subflows(
    edges: &[(usize, usize)],
    subflows: &[usize],
    attempts: &[u32],
    rescue: Rescue,
) -> Flow {
    let mut b = FlowBuilder::graph("random").on_error(rescue);
    for (i, &size) in subflows.iter().enumerate() {
        let after: Vec<String> = edges
            .iter()
            .filter(|(a, b)| *b == i && *a < i)
            .map(|(a, _)| format!("s{a}"))
            .collect();
        let retry = Retry {
            attempts: attempts[i % attempts.len()],
            ..Retry::default()
        };
        b = if size == 0 {
            b.task(format!("s{i}"), "noop", "1", move |t| {
                t.after(after).retry(retry)
            })
        } else {
            let mut inner = FlowBuilder::linear(format!("inner{i}"));
            for j in 0..size {
                inner = inner.task(format!("t{j}"), "noop", "1", |t| t);
            }
            b.subflow(format!("s{i}"), inner, move |t| t.after(after).retry(retry))
        };
    }
    with_reverts(b.build().expect("valid"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]
    /// Ordering holds whatever happens: across retries, subflow restarts, reverts, every
    /// rescue, crashes (a new director takes the stored plan) and operator resumes, no step
    /// starts unless every step it depends on is `success` at that moment — the harness checks
    /// it on every work item — and the plan settles consistently.
    #[test]
    fn no_step_starts_before_its_dependencies_succeeded(
        subflows in proptest::collection::vec(prop_oneof![3 => Just(0usize), 2 => 1usize..4], 1..7),
        edges in proptest::collection::vec((0usize..7, 0usize..7), 0..12),
        attempts in proptest::collection::vec(1u32..4, 1..4),
        outcomes in proptest::collection::vec(proptest::bool::weighted(0.75), 64),
        picks in proptest::collection::vec(0usize..8, 64),
        crash_at in proptest::option::weighted(0.3, 0usize..30),
        rescue in proptest::sample::select(vec![Rescue::Revert, Rescue::Pause, Rescue::Skip, Rescue::Fail]),
        limit in 1usize..4,
    ) {
        let mut h = Harness::new(random_flow_with_subflows(&edges, &subflows, &attempts, rescue), limit);
        h.start(Rescue::Revert);
        let mut resumes = 2;
        for k in 0..10_000 {
            if crash_at == Some(k) && h.ended.is_none() {
                h.restart(Rescue::Revert);
            }
            if !h.work.is_empty() {
                let pick = picks[k % picks.len()] % h.work.len();
                h.answer(pick, outcomes[k % outcomes.len()]);
            } else if !h.timers.is_empty() {
                let t = h.timers.remove(0);
                h.feed(t);
            } else if resumes > 0 && h.ended.as_ref().is_some_and(|e| e.state == plan::State::Paused) {
                // The operator resumes the paused plan.
                resumes -= 1;
                h.ended = None;
                h.restart(Rescue::Revert);
            } else {
                break;
            }
        }
        let end = h.ended.clone().expect("the plan settled");
        let states: Vec<S> = h.steps.iter().map(|s| s.state).collect();
        prop_assert_eq!(end.outcome, Outcome::derive(states.iter().map(|&s| (s, false))));
        prop_assert!(!states.contains(&S::Running) && !states.contains(&S::Reverting));
    }
}

/// Like [`random_flow`], with some steps gates that wait for an event.
fn random_flow_with_gates(
    edges: &[(usize, usize)],
    n: usize,
    gates: &[bool],
    rescue: Rescue,
) -> Flow {
    let mut b = FlowBuilder::graph("random").on_error(rescue);
    for i in 0..n {
        let after: Vec<String> = edges
            .iter()
            .filter(|(a, b)| *b == i && *a < i)
            .map(|(a, _)| format!("s{a}"))
            .collect();
        b = if gates[i % gates.len()] {
            b.gate(format!("s{i}"), None, move |t| t.after(after))
        } else {
            b.task(format!("s{i}"), "noop", "1", move |t| t.after(after))
        };
    }
    with_reverts(b.build().expect("valid"))
}

proptest! {
    /// With gates, events delivered in random order, a random halt, and every rescue
    /// strategy: no illegal or stale transition, and the plan settles consistently.
    #[test]
    fn random_runs_with_events_and_halts_settle_consistently(
        n in 1usize..8,
        edges in proptest::collection::vec((0usize..8, 0usize..8), 0..14),
        gates in proptest::collection::vec(proptest::bool::weighted(0.3), 1..8),
        outcomes in proptest::collection::vec(proptest::bool::weighted(0.8), 64),
        picks in proptest::collection::vec(0usize..8, 64),
        halt_at in proptest::option::weighted(0.3, 0usize..20),
        rescue in proptest::sample::select(vec![Rescue::Revert, Rescue::Pause, Rescue::Skip, Rescue::Fail]),
    ) {
        let mut h = Harness::new(random_flow_with_gates(&edges, n, &gates, rescue), 3);
        h.start(Rescue::Revert);
        let plan = h.plan.id;
        let mut halted = false;
        for k in 0..10_000 {
            if h.ended.is_some() {
                break;
            }
            if halt_at == Some(k) {
                h.feed(Input::Halt { plan, answer: None });
                halted = true;
                break;
            }
            if !h.work.is_empty() {
                let pick = picks[k % picks.len()] % h.work.len();
                h.answer(pick, outcomes[k % outcomes.len()]);
            } else if !h.timers.is_empty() {
                let t = h.timers.remove(0);
                h.feed(t);
            } else if let Some(i) = h.steps.iter().position(|s| s.state == S::Suspended) {
                h.feed(Input::Event { plan, step: i as u32, data: serde_json::json!({}), optional: false, answer: None });
            } else {
                break;
            }
        }
        let end = h.ended.clone().expect("the plan settled");
        let states: Vec<S> = h.steps.iter().map(|s| s.state).collect();
        prop_assert_eq!(end.outcome, Outcome::derive(states.iter().map(|&s| (s, false))));
        prop_assert!(!states.contains(&S::Running) && !states.contains(&S::Reverting));
        if halted {
            prop_assert_eq!(end.state, plan::State::Stopped);
            return Ok(());
        }
        match (rescue, end.state, end.outcome) {
            (_, plan::State::Stopped, Outcome::Success) => prop_assert!(states.iter().all(|s| *s == S::Success)),
            (Rescue::Revert, plan::State::Stopped, Outcome::Error) => prop_assert!(!states.contains(&S::Success)),
            (Rescue::Skip, plan::State::Stopped, Outcome::Warning) => {
                prop_assert!(states.iter().all(|s| matches!(s, S::Success | S::Skipped)))
            }
            (Rescue::Fail, plan::State::Stopped, Outcome::Error) => prop_assert!(states.contains(&S::Error)),
            (_, plan::State::Paused, _) => prop_assert!(states.contains(&S::Error) || states.contains(&S::RevertFailed)),
            other => prop_assert!(false, "unexpected end {:?}", other),
        }
    }
}

mod dynflow {
    //! The director's Dynflow semantics: events, suspension, halt, rescue strategies and their
    //! guard, cancel, inhibition, terminate.
    use super::*;
    use std::time::Duration;

    fn gate_flow(timeout: Option<Duration>) -> Flow {
        FlowBuilder::linear("g")
            .task("build", "noop", "1", |t| t)
            .gate("approve", timeout, |t| t.provides(["who"]))
            .task("ship", "noop", "1", |t| t.requires(["who"]))
            .build()
            .expect("valid")
    }

    fn event(h: &mut Harness, step: u32, data: serde_json::Value) -> Result<(), String> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let plan = h.plan.id;
        h.feed(Input::Event {
            plan,
            step,
            data,
            optional: false,
            answer: Some(tx.into()),
        });
        h.answers
            .pop()
            .unwrap_or_else(|| rx.try_recv().unwrap_or_else(|_| Err("no answer".into())))
    }

    #[test]
    fn a_gate_suspends_until_its_event_and_the_event_becomes_its_output() {
        let mut h = Harness::new(gate_flow(None), 8);
        h.start(Rescue::Revert);
        h.answer(0, true); // build
        assert_eq!(h.state_of("approve"), S::Suspended);
        assert!(h.work.is_empty(), "a gate runs nothing");
        let e = event(&mut h, 0, serde_json::json!({})).expect_err("build is not suspended");
        assert!(
            e.contains("is success, not suspended; it cannot process events"),
            "{e}"
        );
        let e = event(&mut h, 1, serde_json::json!({"other": 1})).expect_err("missing provides");
        assert!(e.contains("has no key `who`"), "{e}");
        assert_eq!(
            h.state_of("approve"),
            S::Suspended,
            "a refused event changes nothing"
        );
        event(&mut h, 1, serde_json::json!({"who": "alice"})).expect("taken");
        assert_eq!(h.state_of("approve"), S::Success);
        assert_eq!(
            h.work[0].inputs["who"], "alice",
            "the event's data flows on"
        );
        h.run(|_, _| true);
        assert_eq!(h.ended.expect("ended").outcome, Outcome::Success);
    }

    #[test]
    fn an_event_for_a_plan_not_running_here_is_refused_unless_optional() {
        let mut h = Harness::new(gate_flow(None), 8);
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let plan = PlanId::new();
        h.feed(Input::Event {
            plan,
            step: 0,
            data: serde_json::json!({}),
            optional: false,
            answer: Some(tx.into()),
        });
        let e = h.answers.pop().expect("answered").expect_err("refused");
        assert!(
            e.contains("is not running; it cannot receive events"),
            "{e}"
        );
        let (tx, _rx) = tokio::sync::oneshot::channel();
        h.feed(Input::Event {
            plan,
            step: 0,
            data: serde_json::json!({}),
            optional: true,
            answer: Some(tx.into()),
        });
        let e = h.answers.pop().expect("answered").expect_err("dropped");
        assert!(e.contains("the optional event was dropped"), "{e}");
    }

    #[test]
    fn a_suspended_step_fails_at_its_deadline_and_the_deadline_survives_a_restart() {
        let mut h = Harness::new(gate_flow(Some(Duration::from_secs(60))), 8);
        h.start(Rescue::Pause);
        h.answer(0, true);
        let deadline = h.steps[1].deadline.expect("stored with the step");
        assert_eq!(h.timers.len(), 1);
        // The process dies; a new one takes the plan and sets the timer again from the store.
        h.restart(Rescue::Pause);
        assert!(matches!(h.timers[..], [Input::Deadline { at, .. }] if at == deadline));
        let t = h.timers.remove(0);
        h.feed(t);
        assert_eq!(h.state_of("approve"), S::Error);
        let end = h.ended.expect("ended");
        assert_eq!(
            (end.state, end.outcome),
            (plan::State::Paused, Outcome::Error)
        );
        assert!(end
            .failure
            .expect("failure")
            .message
            .starts_with("no event arrived within"));
    }

    #[test]
    fn an_event_before_the_deadline_disarms_it() {
        let mut h = Harness::new(gate_flow(Some(Duration::from_secs(60))), 8);
        h.start(Rescue::Pause);
        h.answer(0, true);
        event(&mut h, 1, serde_json::json!({"who": "bob"})).expect("taken");
        let t = h.timers.remove(0);
        h.feed(t); // the stale deadline
        assert_eq!(h.state_of("approve"), S::Success);
    }

    #[test]
    fn halt_cancels_running_steps_kills_their_processes_and_stops_the_plan() {
        let flow = FlowBuilder::unordered("u")
            .task("a", "noop", "1", |t| t)
            .gate("wait", None, |t| t)
            .task("b", "noop", "1", |t| t.after(["a"]))
            .build()
            .expect("valid");
        let mut h = Harness::new(flow, 8);
        h.start(Rescue::Revert);
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let plan = h.plan.id;
        h.feed(Input::Halt {
            plan,
            answer: Some(tx.into()),
        });
        assert_eq!(h.kills, vec![(plan, 0)]);
        assert_eq!(h.state_of("a"), S::Cancelled);
        assert_eq!(
            h.state_of("wait"),
            S::Suspended,
            "Dynflow: a suspended step stays suspended"
        );
        assert_eq!(h.state_of("b"), S::Pending);
        let end = h.ended.clone().expect("ended");
        assert_eq!(
            (end.state, end.outcome),
            (plan::State::Stopped, Outcome::Cancelled)
        );
        h.answer(0, true); // a's report arrives late: ignored
        assert_eq!(h.state_of("a"), S::Cancelled);
    }

    #[test]
    fn skip_rescue_skips_the_failed_step_and_its_dependents_and_the_rest_runs_on() {
        let flow = FlowBuilder::graph("s")
            .on_error(Rescue::Skip)
            .task("bad", "noop", "1", |t| t)
            .task("child", "noop", "1", |t| t.after(["bad"]))
            .task("other", "noop", "1", |t| t)
            .build()
            .expect("valid");
        let mut h = Harness::new(flow, 8);
        h.start(Rescue::Revert); // the flow's on_error wins
        h.run(|name, _| name != "bad");
        assert_eq!(h.state_of("bad"), S::Skipped);
        assert_eq!(h.state_of("child"), S::Skipped);
        assert_eq!(h.state_of("other"), S::Success);
        let end = h.ended.expect("ended");
        assert_eq!(
            (end.state, end.outcome),
            (plan::State::Stopped, Outcome::Warning)
        );
    }

    #[test]
    fn fail_rescue_stops_with_error_and_leaves_the_rest_pending() {
        let mut h = Harness::new(linear(3), 8);
        h.start(Rescue::Fail);
        h.answer(0, false);
        let end = h.ended.clone().expect("ended");
        assert_eq!(
            (end.state, end.outcome),
            (plan::State::Stopped, Outcome::Error)
        );
        assert_eq!((h.state_of("s0"), h.state_of("s1")), (S::Error, S::Pending));
    }

    #[test]
    fn a_step_already_rescued_is_not_rescued_again_the_plan_pauses() {
        // Auto-rescue applies a strategy only to a failure set it has not seen: a step whose
        // failure was rescued once pauses the plan when it fails again.
        let mut h = Harness::new(linear(2), 8);
        h.plan.bookkeeping = serde_json::json!({ "rescued": [0] });
        h.start(Rescue::Fail);
        h.answer(0, false);
        let end = h.ended.clone().expect("ended");
        assert_eq!(
            end.state,
            plan::State::Paused,
            "not stopped by the fail strategy again"
        );
        // A fresh failure of another step is rescued.
        let mut h = Harness::new(linear(2), 8);
        h.plan.bookkeeping = serde_json::json!({ "rescued": [1] });
        h.start(Rescue::Fail);
        h.answer(0, false);
        assert_eq!(h.ended.expect("ended").state, plan::State::Stopped);
    }

    #[test]
    fn an_operators_cancel_reverts_what_completed_and_ends_cancelled() {
        let mut h = Harness::new(with_reverts(linear(3)), 8);
        h.start(Rescue::Pause);
        h.answer(0, true);
        h.answer(0, false); // s1 fails: paused
        assert_eq!(h.ended.take().expect("paused").state, plan::State::Paused);
        h.director = Director::new(8, 7);
        h.start_with(Rescue::Pause, Intent::Cancel, false);
        h.run(|_, _| true);
        assert_eq!(h.log.last().map(String::as_str), Some("revert s0"));
        let end = h.ended.clone().expect("ended");
        assert_eq!(
            (end.state, end.outcome),
            (plan::State::Stopped, Outcome::Cancelled)
        );
        assert_eq!(
            (h.state_of("s0"), h.state_of("s1"), h.state_of("s2")),
            (S::Reverted, S::Cancelled, S::Cancelled)
        );
    }

    #[test]
    fn an_inhibited_plan_is_halted_and_refused() {
        let mut h = Harness::new(linear(2), 8);
        h.start_with(Rescue::Revert, Intent::Run, true);
        assert!(h
            .refused
            .clone()
            .expect("refused")
            .ends_with("it's execution is inhibited"));
        assert_eq!(h.plan.state, plan::State::Stopped);
        assert!(h.work.is_empty());
    }

    #[test]
    fn after_terminate_nothing_new_starts_but_running_work_reports() {
        let mut h = Harness::new(linear(2), 8);
        h.start(Rescue::Revert);
        h.feed(Input::Terminate);
        h.answer(0, true);
        assert_eq!(h.state_of("s0"), S::Success);
        assert!(h.work.is_empty(), "s1 is not started while terminating");
        assert!(h.ended.is_none());
    }

    #[test]
    fn a_warning_completes_the_step_and_makes_the_result_warning() {
        let mut h = Harness::new(linear(1), 8);
        h.start(Rescue::Revert);
        let item = h.work.remove(0);
        let output = serde_json::json!({});
        let result = Ok(Completion::Done {
            output,
            warning: Some("exited with code 3, a warning".into()),
        });
        h.feed(Input::Executed {
            plan: item.plan,
            step: item.step,
            attempt: item.attempt,
            result,
        });
        let end = h.ended.expect("ended");
        assert_eq!(
            (end.state, end.outcome),
            (plan::State::Stopped, Outcome::Warning)
        );
    }
}

/// Regression (found by the property test): a plan that reverted while a gate waited for its
/// event stopped with the gate's dependency still `success` — never reverted.
#[test]
fn a_waiting_step_fails_when_the_plan_reverts_so_its_dependency_is_reverted() {
    let flow = with_reverts(
        FlowBuilder::graph("g")
            .task("setup", "noop", "1", |t| t)
            .gate("approve", None, |t| t.after(["setup"]))
            .task("other", "noop", "1", |t| t)
            .build()
            .expect("valid"),
    );
    let mut h = Harness::new(flow, 8);
    h.start(Rescue::Revert);
    let setup = h.work.iter().position(|w| w.step == 0).expect("setup runs");
    h.answer(setup, true);
    assert_eq!(h.state_of("approve"), S::Suspended);
    h.answer(0, false); // `other` fails: revert
    h.run(|_, _| true);
    assert_eq!(h.state_of("approve"), S::Error);
    assert_eq!(h.state_of("setup"), S::Reverted);
    let end = h.ended.expect("ended");
    assert_eq!(
        (end.state, end.outcome),
        (plan::State::Stopped, Outcome::Error)
    );
}

/// Regression: a wait timeout too long to add to the clock overflowed (a panic in debug
/// builds) instead of meaning "practically never".
#[test]
fn an_enormous_wait_timeout_does_not_overflow_the_deadline() {
    let flow = FlowBuilder::linear("g")
        .gate(
            "approve",
            Some(std::time::Duration::from_secs(u64::MAX / 1000)),
            |t| t,
        )
        .build()
        .expect("valid");
    let mut h = Harness::new(flow, 8);
    h.start(Rescue::Pause);
    assert_eq!(h.state_of("approve"), S::Suspended);
    assert_eq!(h.steps[0].deadline, Some(i64::MAX));
}

mod limits {
    use super::*;
    use weft_model::limit::{Concurrency, Limits};

    fn limited(flow_limit: bool, step_limit: bool) -> Flow {
        let mut flow = linear(2);
        let limits = Limits {
            concurrency: Some(Concurrency {
                key: "k".into(),
                limit: 1,
            }),
            queue: None,
        };
        if flow_limit {
            flow.limits = limits.clone();
        }
        if step_limit {
            flow.steps[1].limits = limits;
        }
        flow
    }

    fn grant(h: &mut Harness) {
        let ask = h.asks.remove(0);
        h.feed(Input::SlotGranted {
            plan: ask.plan,
            step: ask.step,
        });
    }

    #[test]
    fn a_limited_plan_starts_no_step_until_its_slot_is_granted() {
        let mut h = Harness::new(limited(true, false), 8);
        h.start(Rescue::Revert);
        assert!(h.work.is_empty(), "nothing runs before the slot");
        assert_eq!(h.asks.len(), 1);
        assert_eq!(h.asks[0].step, None);
        assert_eq!(
            h.asks[0].wants[0].scope,
            format!("flow:{}", h.plan.flow.name)
        );
        assert!(h.released.is_empty(), "a plan never started holds no slots");
        assert_eq!(
            h.plan.state,
            weft_model::plan::State::Planned,
            "it has not started while it waits"
        );
        grant(&mut h);
        assert_eq!(h.work.len(), 1);
        // A restart finds the plan running: what an earlier run held goes back first.
        h.restart(Rescue::Revert);
        assert_eq!(h.released, vec![None]);
        assert!(h.work.is_empty(), "nothing runs before the slot, again");
        grant(&mut h);
        h.run(|_, _| true);
        assert_eq!(h.plan.state, weft_model::plan::State::Stopped);
        assert_eq!(
            h.released,
            vec![None, None],
            "the end gives every slot back"
        );
    }

    #[test]
    fn a_limited_step_waits_for_its_slot_and_gives_it_back_when_it_stops_running() {
        let mut h = Harness::new(limited(false, true), 8);
        h.start(Rescue::Revert);
        assert!(h.asks.is_empty(), "the plan itself has no limit");
        h.answer(0, true);
        assert!(h.work.is_empty(), "step 1 waits for its slot");
        assert_eq!(h.asks.len(), 1);
        assert_eq!(h.asks[0].step, Some(1));
        assert_eq!(h.state_of(&h.steps[1].name.clone()), S::Pending);
        grant(&mut h);
        assert_eq!(h.work.len(), 1);
        assert_eq!(h.work[0].step, 1);
        h.answer(0, true);
        assert_eq!(h.released, vec![Some(1), None]);
        assert_eq!(h.plan.state, weft_model::plan::State::Stopped);
    }

    #[test]
    fn a_halt_while_waiting_for_a_slot_ends_the_plan_and_a_late_grant_starts_nothing() {
        let mut h = Harness::new(limited(true, false), 8);
        h.start(Rescue::Revert);
        let plan = h.plan.id;
        h.feed(Input::Halt { plan, answer: None });
        assert_eq!(h.plan.state, weft_model::plan::State::Stopped);
        grant(&mut h);
        assert!(h.work.is_empty());
    }
}
