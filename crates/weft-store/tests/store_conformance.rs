//! One conformance suite, run against every backend: the rules a `Store` must keep whatever
//! holds the data.

use std::collections::BTreeMap;
use std::sync::Arc;
use weft_model::flow::FlowBuilder;
use weft_model::job::{BoardError, JobId, Priority, Release, State as JobState};
use weft_model::plan::{self, Outcome};
use weft_model::{now_millis, step, Failure, PlanId};
use weft_store::{
    Change, Entity, Error, JobFilter, NewJob, NewPlan, PlanFilter, SharedStore, StepRecord,
};

fn new_plan() -> NewPlan {
    let flow = FlowBuilder::linear("conf")
        .task("a", "noop", "1", |t| t)
        .task("b", "noop", "1", |t| t)
        .build()
        .expect("valid flow");
    NewPlan::new(
        flow,
        BTreeMap::from([("x".to_string(), serde_json::json!(1))]),
    )
}

/// What a claimer must be able to run to claim [`new_plan`]'s plans.
fn noop() -> Vec<String> {
    vec!["noop@1".into()]
}

fn step(index: u32, state: step::State, attempt: u32) -> StepRecord {
    StepRecord {
        index,
        name: String::new(),
        state,
        attempt,
        started_at: Some(now_millis()),
        ended_at: None,
        output: None,
        failure: None,
        deadline: None,
        warning: None,
        group: None,
    }
}

fn step_change(plan: PlanId, from: step::State, rec: StepRecord) -> Change {
    Change::Step {
        plan,
        from,
        step: rec,
        at: now_millis(),
    }
}

async fn creates_and_loads_a_plan(store: SharedStore) {
    let p = new_plan();
    let id = p.id;
    store.create_plan(p.clone()).await.expect("create");
    let snap = store.load_plan(id).await.expect("load");
    assert_eq!(snap.plan.state, plan::State::Planned);
    assert_eq!(snap.plan.flow, p.flow);
    assert_eq!(snap.plan.inputs, p.inputs);
    assert_eq!(snap.steps.len(), 2);
    assert!(snap
        .steps
        .iter()
        .all(|s| s.state == step::State::Pending && s.attempt == 0));
    assert_eq!(snap.steps[1].name, "b");
    assert!(matches!(store.create_plan(p).await, Err(Error::Exists(_))));
    assert!(matches!(
        store.load_plan(PlanId::new()).await,
        Err(Error::NotFound(_))
    ));
}

async fn applies_changes_and_records_history(store: SharedStore) {
    let p = new_plan();
    let id = p.id;
    store.create_plan(p).await.expect("create");
    let mut done = step(0, step::State::Success, 1);
    done.output = Some(serde_json::json!({"v": 2}));
    store
        .apply(
            "test",
            vec![
                Change::plan_state(id, plan::State::Planned, plan::State::Running, now_millis()),
                step_change(id, step::State::Pending, step(0, step::State::Running, 1)),
                step_change(id, step::State::Running, done.clone()),
                Change::Bookkeeping {
                    plan: id,
                    bookkeeping: serde_json::json!({"reverting": false}),
                },
            ],
        )
        .await
        .expect("apply");
    let snap = store.load_plan(id).await.expect("load");
    assert_eq!(snap.plan.state, plan::State::Running);
    assert!(snap.plan.started_at.is_some());
    assert_eq!(snap.plan.bookkeeping["reverting"], false);
    assert_eq!(snap.steps[0].state, step::State::Success);
    assert_eq!(snap.steps[0].output, done.output);
    assert_eq!(snap.steps[0].name, "a", "the name survives updates");
    let history = store.history(id).await.expect("history");
    let moves: Vec<(Option<u32>, &str, &str)> = history
        .iter()
        .map(|h| (h.step, h.from.as_str(), h.to.as_str()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (None, "planned", "running"),
            (Some(0), "pending", "running"),
            (Some(0), "running", "success")
        ]
    );
}

async fn a_fenced_write_that_finds_another_state_lands_nothing(store: SharedStore) {
    let p = new_plan();
    let id = p.id;
    store.create_plan(p).await.expect("create");
    let result = store
        .apply(
            "test",
            vec![
                step_change(id, step::State::Pending, step(0, step::State::Running, 1)),
                // step 1 is pending, not running: the whole batch must fail
                step_change(id, step::State::Running, step(1, step::State::Success, 1)),
            ],
        )
        .await;
    match result {
        Err(Error::Conflict {
            step: Some(1),
            expected,
            found,
            ..
        }) => {
            assert_eq!((expected.as_str(), found.as_str()), ("running", "pending"));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let snap = store.load_plan(id).await.expect("load");
    assert_eq!(
        snap.steps[0].state,
        step::State::Pending,
        "nothing of the batch landed"
    );
    assert!(store.history(id).await.expect("history").is_empty());
}

async fn one_callers_conflict_does_not_fail_another(store: SharedStore) {
    let a = new_plan();
    let b = new_plan();
    store.create_plan(a.clone()).await.expect("create");
    store.create_plan(b.clone()).await.expect("create");
    // Submitted together, so a group-committing backend puts them in one transaction.
    let bad = store.apply(
        "test",
        vec![step_change(
            a.id,
            step::State::Success,
            step(0, step::State::Reverting, 1),
        )],
    );
    let good = store.apply(
        "test",
        vec![step_change(
            b.id,
            step::State::Pending,
            step(0, step::State::Running, 1),
        )],
    );
    assert!(matches!(bad.await, Err(Error::Conflict { .. })));
    good.await.expect("the other caller's write lands");
    assert_eq!(
        store.load_plan(b.id).await.expect("load").steps[0].state,
        step::State::Running
    );
}

async fn lists_plans_with_derived_results(store: SharedStore) {
    let ok = new_plan();
    let failed = new_plan();
    store.create_plan(ok.clone()).await.expect("create");
    store.create_plan(failed.clone()).await.expect("create");
    let mut changes = Vec::new();
    for i in 0..2 {
        changes.push(step_change(
            ok.id,
            step::State::Pending,
            step(i, step::State::Running, 1),
        ));
        changes.push(step_change(
            ok.id,
            step::State::Running,
            step(i, step::State::Success, 1),
        ));
    }
    changes.push(Change::plan_state(
        ok.id,
        plan::State::Planned,
        plan::State::Running,
        1,
    ));
    changes.push(Change::plan_state(
        ok.id,
        plan::State::Running,
        plan::State::Stopped,
        2,
    ));
    changes.push(step_change(
        failed.id,
        step::State::Pending,
        step(0, step::State::Running, 1),
    ));
    let mut err = step(0, step::State::Error, 1);
    err.failure = Some(Failure::new("command", "exited with code 1"));
    changes.push(step_change(failed.id, step::State::Running, err));
    store.apply("test", changes).await.expect("apply");

    let all = store.list_plans(PlanFilter::default()).await.expect("list");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, failed.id, "newest first");
    assert_eq!(all[0].result, Outcome::Error);
    assert_eq!(all[1].result, Outcome::Success);
    assert_eq!(all[1].ended_at, Some(2));
    let stopped = store
        .list_plans(PlanFilter {
            state: Some(plan::State::Stopped),
            ..PlanFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        stopped.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![ok.id]
    );
    let one = store
        .list_plans(PlanFilter {
            limit: Some(1),
            ..PlanFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(one.len(), 1);
    // Paging: the next page starts after the last id listed.
    let next = store
        .list_plans(PlanFilter {
            before: Some(one[0].id),
            ..PlanFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(next.iter().map(|p| p.id).collect::<Vec<_>>(), vec![ok.id]);
    let ids = |f: PlanFilter| {
        let store = store.clone();
        async move {
            let mut ids: Vec<_> = store
                .list_plans(f)
                .await
                .expect("list")
                .iter()
                .map(|p| p.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let flow = all[0].flow.clone();
    let by_flow = ids(PlanFilter {
        flow: Some(flow.clone()),
        ..PlanFilter::default()
    })
    .await;
    assert_eq!(by_flow.len(), 2, "both plans are of flow {flow}");
    assert!(ids(PlanFilter {
        flow: Some("nope".into()),
        ..PlanFilter::default()
    })
    .await
    .is_empty());
    let prefix = failed.id.to_string();
    assert_eq!(
        ids(PlanFilter {
            search: Some(prefix),
            ..PlanFilter::default()
        })
        .await,
        vec![failed.id]
    );
    let middle: String = flow.chars().skip(1).collect();
    assert_eq!(
        ids(PlanFilter {
            search: Some(middle),
            ..PlanFilter::default()
        })
        .await
        .len(),
        2
    );
    assert!(
        ids(PlanFilter {
            search: Some("%".into()),
            ..PlanFilter::default()
        })
        .await
        .is_empty(),
        "no wildcards"
    );
    let counts = store.count_plans().await.expect("count");
    let count = |s: plan::State| counts.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n);
    assert_eq!(count(plan::State::Stopped), 1);
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 2, "{counts:?}");
    let loaded = store.load_plan(failed.id).await.expect("load");
    assert_eq!(
        loaded.steps[0].failure.as_ref().map(|f| f.message.as_str()),
        Some("exited with code 1")
    );
    // The history says who made the change, the attempt, and why.
    let last = store
        .history(failed.id)
        .await
        .expect("history")
        .pop()
        .expect("an entry");
    assert_eq!(last.by.as_deref(), Some("test"));
    assert_eq!(
        last.data,
        Some(serde_json::json!({"attempt": 1, "why": "exited with code 1"}))
    );
    let history = store.history(ok.id).await.expect("history");
    let stop = history.iter().find(|h| h.to == "stopped").expect("stopped");
    assert_eq!(
        stop.data, None,
        "a plan move without a reason carries no data"
    );
}

async fn resolves_id_prefixes(store: SharedStore) {
    let p = new_plan();
    store.create_plan(p.clone()).await.expect("create");
    let full = p.id.to_string();
    assert_eq!(store.resolve_id(full.clone()).await.expect("full id"), p.id);
    assert_eq!(
        store
            .resolve_id(full[..30].to_string())
            .await
            .expect("prefix"),
        p.id
    );
    assert!(matches!(
        store.resolve_id("ffffffff".into()).await,
        Err(Error::NotFound(_))
    ));
    let q = new_plan();
    store.create_plan(q).await.expect("create");
    // Both v7 ids share their leading (time) digits.
    assert!(matches!(
        store.resolve_id(full[..4].to_string()).await,
        Err(Error::Ambiguous(_))
    ));
}

async fn execution_locks_have_one_owner(store: SharedStore) {
    let p = new_plan();
    store.create_plan(p.clone()).await.expect("create");
    store
        .acquire_lock(p.id, "node-a".into())
        .await
        .expect("first lock");
    store
        .acquire_lock(p.id, "node-a".into())
        .await
        .expect("re-entrant");
    match store.acquire_lock(p.id, "node-b".into()).await {
        Err(Error::Locked { owner, .. }) => assert_eq!(owner, "node-a"),
        other => panic!("expected Locked, got {other:?}"),
    }
    store
        .release_lock(p.id, Some("node-b".into()))
        .await
        .expect("no-op release");
    assert_eq!(
        store.lock_owner(p.id).await.expect("owner"),
        Some("node-a".into())
    );
    let (snap, owner) = store.load_plan_and_owner(p.id).await.expect("load");
    assert_eq!((snap.plan.id, owner.as_deref()), (p.id, Some("node-a")));
    store
        .release_lock(p.id, None)
        .await
        .expect("forced release");
    store
        .acquire_lock(p.id, "node-b".into())
        .await
        .expect("free again");
    let q = new_plan();
    store.create_plan(q.clone()).await.expect("create");
    store
        .acquire_lock(q.id, "node-b".into())
        .await
        .expect("second lock");
    assert_eq!(
        store.lock_holders().await.expect("holders"),
        vec!["node-b".to_string()],
        "each holder once"
    );
    assert!(matches!(
        store.acquire_lock(PlanId::new(), "x".into()).await,
        Err(Error::NotFound(_))
    ));
}

async fn claims_only_waiting_unlocked_uninhibited_plans(store: SharedStore) {
    let planned = new_plan();
    let owned = NewPlan {
        owner: Some("runner".into()),
        ..new_plan()
    };
    let inhibited = new_plan();
    let scheduled = NewPlan {
        state: plan::State::Scheduled,
        start_at: Some(i64::MAX),
        ..new_plan()
    };
    for p in [&planned, &owned, &inhibited, &scheduled] {
        store.create_plan(p.clone()).await.expect("create");
    }
    store.inhibit(inhibited.id).await.expect("inhibit");
    assert!(store.is_inhibited(inhibited.id).await.expect("read"));
    assert_eq!(
        store.lock_owner(owned.id).await.expect("owner"),
        Some("runner".into()),
        "created with its lock"
    );
    let claimed = store
        .claim_plans("node-a".into(), 10, noop())
        .await
        .expect("claim");
    assert_eq!(claimed, vec![planned.id]);
    assert!(
        store
            .claim_plans("node-b".into(), 10, noop())
            .await
            .expect("claim")
            .is_empty(),
        "claimed once"
    );
    // A running plan whose lock is released (its node died) is claimable again.
    store
        .apply(
            "test",
            vec![Change::plan_state(
                planned.id,
                plan::State::Planned,
                plan::State::Running,
                1,
            )],
        )
        .await
        .expect("apply");
    store.release_lock(planned.id, None).await.expect("release");
    assert_eq!(
        store
            .claim_plans("node-b".into(), 10, noop())
            .await
            .expect("claim"),
        vec![planned.id]
    );
}

async fn dead_nodes_are_invalidated_and_their_locks_released(store: SharedStore) {
    let p = new_plan();
    store.create_plan(p.clone()).await.expect("create");
    let node = weft_store::NodeRecord {
        id: "n/1".into(),
        name: "n".into(),
        started_at: 1,
        heartbeat_at: 1,
        report: None,
        process: Some("weft@host:1:2".into()),
        capabilities: vec!["fetch@1".into()],
    };
    store.register_node(node.clone()).await.expect("register");
    // Heartbeats are on the store's clock (the database server's, for PostgreSQL).
    let before = store.clock().await.expect("clock");
    store
        .heartbeat("n/1".into(), before)
        .await
        .expect("heartbeat");
    let after = store.clock().await.expect("clock");
    let beat = store.nodes().await.expect("nodes")[0].heartbeat_at;
    assert_eq!(
        store.nodes().await.expect("nodes")[0].process.as_deref(),
        Some("weft@host:1:2"),
        "the node's process is kept, for its next incarnation to judge"
    );
    assert_eq!(
        store.nodes().await.expect("nodes")[0].capabilities,
        vec!["fetch@1".to_string()],
        "what the node can run is kept, for `weft status` and waiting plans to show"
    );
    assert_eq!(
        store.known_capabilities().await.expect("known"),
        vec!["fetch@1".to_string()]
    );
    assert!(
        before <= beat && beat <= after,
        "{before} <= {beat} <= {after}"
    );
    store
        .set_node_report("n/1".into(), serde_json::json!({"state": "started"}))
        .await
        .expect("report");
    assert_eq!(
        store.nodes().await.expect("nodes")[0].report,
        Some(serde_json::json!({"state": "started"}))
    );
    store
        .check()
        .await
        .expect("a store that is there passes its check");
    // A node holding locks whose executor restarted releases them all at once.
    assert_eq!(
        store
            .claim_plans("n/1".into(), 1, noop())
            .await
            .expect("claim"),
        vec![p.id]
    );
    assert_eq!(
        store.release_locks("n/1".into()).await.expect("release"),
        vec![p.id]
    );
    assert_eq!(
        store
            .claim_plans("n/1".into(), 1, noop())
            .await
            .expect("claim"),
        vec![p.id]
    );
    assert_eq!(
        store
            .invalidate_node("n/1".into())
            .await
            .expect("invalidate"),
        vec![p.id]
    );
    assert_eq!(
        store.known_capabilities().await.expect("known"),
        vec!["fetch@1".to_string()],
        "a capability outlives the node that registered it"
    );
    assert_eq!(store.lock_owner(p.id).await.expect("owner"), None);
    assert!(store.nodes().await.expect("nodes").is_empty());
    assert!(
        matches!(
            store.heartbeat("n/1".into(), 6).await,
            Err(Error::NotFound(_))
        ),
        "an invalidated node learns it"
    );
}

async fn due_plans_are_promoted_once_and_failed_prerequisites_reported(store: SharedStore) {
    let due = NewPlan {
        state: plan::State::Scheduled,
        start_at: Some(100),
        ..new_plan()
    };
    let later = NewPlan {
        state: plan::State::Scheduled,
        start_at: Some(10_000),
        ..new_plan()
    };
    let prerequisite = new_plan();
    let chained = NewPlan {
        state: plan::State::Scheduled,
        after: vec![prerequisite.id],
        ..new_plan()
    };
    for p in [&due, &later, &prerequisite, &chained] {
        store.create_plan(p.clone()).await.expect("create");
    }
    let promoted = store.promote_due("test", 500).await.expect("promote");
    assert_eq!(
        promoted,
        vec![weft_store::Due::Ready(due.id)],
        "the chained plan waits"
    );
    assert!(
        store
            .promote_due("test", 500)
            .await
            .expect("promote")
            .is_empty(),
        "promoted once"
    );
    assert_eq!(
        store.load_plan(due.id).await.expect("load").plan.state,
        plan::State::Planned
    );
    let history = store.history(due.id).await.expect("history");
    assert_eq!(
        history.iter().map(|h| h.to.as_str()).collect::<Vec<_>>(),
        vec!["planning", "planned"]
    );
    // The prerequisite fails and stops: the chained plan is reported, not started.
    let mut err = step(0, step::State::Error, 1);
    err.failure = Some(Failure::new("x", "y"));
    store
        .apply(
            "test",
            vec![
                step_change(
                    prerequisite.id,
                    step::State::Pending,
                    step(0, step::State::Running, 1),
                ),
                step_change(prerequisite.id, step::State::Running, err),
                Change::plan_state(
                    prerequisite.id,
                    plan::State::Planned,
                    plan::State::Running,
                    1,
                ),
                Change::plan_state(
                    prerequisite.id,
                    plan::State::Running,
                    plan::State::Stopped,
                    2,
                ),
            ],
        )
        .await
        .expect("apply");
    assert_eq!(
        store.promote_due("test", 500).await.expect("promote"),
        vec![weft_store::Due::FailedDependency {
            plan: chained.id,
            prerequisite: prerequisite.id
        }]
    );
}

async fn the_mailbox_delivers_to_the_lock_holder_and_answers_once(store: SharedStore) {
    let p = new_plan();
    store.create_plan(p.clone()).await.expect("create");
    let id = store
        .post(p.id, weft_store::Instruction::Halt)
        .await
        .expect("post");
    assert!(
        store.inbox("node".into()).await.expect("inbox").is_empty(),
        "not for a node without the lock"
    );
    store.acquire_lock(p.id, "node".into()).await.expect("lock");
    let inbox = store.inbox("node".into()).await.expect("inbox");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].instruction, weft_store::Instruction::Halt);
    assert_eq!(
        store.reply_of(id).await.expect("reply"),
        weft_store::Reply::Pending
    );
    assert!(store
        .reply(id, weft_store::Reply::Done)
        .await
        .expect("answer"));
    assert!(
        !store
            .reply(id, weft_store::Reply::Refused("late".into()))
            .await
            .expect("answer"),
        "answered once"
    );
    assert_eq!(
        store.reply_of(id).await.expect("reply"),
        weft_store::Reply::Done
    );
    assert!(store.inbox("node".into()).await.expect("inbox").is_empty());
    assert!(matches!(
        store
            .post(PlanId::new(), weft_store::Instruction::Halt)
            .await,
        Err(Error::NotFound(_))
    ));
}

async fn a_reply_lands_with_the_changes_it_answers_or_not_at_all(store: SharedStore) {
    let p = new_plan();
    let id = p.id;
    store.create_plan(p).await.expect("create");
    let first = store
        .post(id, weft_store::Instruction::Halt)
        .await
        .expect("post");
    let second = store
        .post(id, weft_store::Instruction::Halt)
        .await
        .expect("post");
    let reply = |message| Change::Reply {
        plan: id,
        message,
        reply: weft_store::Reply::Done,
    };
    // A batch that fails its fence takes its reply down with it.
    let failed = store
        .apply(
            "test",
            vec![
                step_change(id, step::State::Running, step(0, step::State::Success, 1)),
                reply(first),
            ],
        )
        .await;
    assert!(matches!(failed, Err(Error::Conflict { .. })), "{failed:?}");
    assert_eq!(
        store.reply_of(first).await.expect("reply"),
        weft_store::Reply::Pending,
        "no answer without the changes it answers"
    );
    // A batch that lands answers its message.
    store
        .apply(
            "test",
            vec![
                step_change(id, step::State::Pending, step(0, step::State::Running, 1)),
                reply(first),
            ],
        )
        .await
        .expect("apply");
    assert_eq!(
        store.reply_of(first).await.expect("reply"),
        weft_store::Reply::Done
    );
    // A message answered already (its sender withdrew it) keeps its answer.
    assert!(store
        .reply(second, weft_store::Reply::Refused("withdrawn".into()))
        .await
        .expect("withdraw"));
    store
        .apply("test", vec![reply(second)])
        .await
        .expect("apply");
    assert_eq!(
        store.reply_of(second).await.expect("reply"),
        weft_store::Reply::Refused("withdrawn".into())
    );
}

async fn keeps_a_running_groups_progress(store: SharedStore) {
    use weft_model::group::{Progress, TaskRun, TaskState};
    let p = new_plan();
    let id = p.id;
    store.create_plan(p).await.expect("create");
    let progress = |state| Progress {
        restarts: 1,
        tasks: vec![TaskRun {
            state,
            ..TaskRun::pending("server")
        }],
        event: None,
    };
    let group = |attempt, state| Change::Group {
        plan: id,
        step: 0,
        attempt,
        progress: progress(state),
    };
    // Only a running step, at the attempt it runs, takes progress.
    assert!(matches!(
        store.apply("t", vec![group(1, TaskState::Running)]).await,
        Err(Error::Conflict { .. })
    ));
    store
        .apply(
            "t",
            vec![
                step_change(id, step::State::Pending, step(0, step::State::Running, 1)),
                group(1, TaskState::Running),
                group(1, TaskState::Ready),
            ],
        )
        .await
        .expect("progress");
    let snap = store.load_plan(id).await.expect("load");
    assert_eq!(snap.steps[0].group, Some(progress(TaskState::Ready)));
    assert!(matches!(
        store.apply("t", vec![group(2, TaskState::Failed)]).await,
        Err(Error::Conflict { .. })
    ));
    // Progress is not history.
    let history = store.history(id).await.expect("history");
    assert_eq!(history.len(), 1, "{history:?}");
    // The step's own change carries it on, or clears it.
    let mut done = step(0, step::State::Success, 1);
    done.group = Some(progress(TaskState::Succeeded));
    store
        .apply("t", vec![step_change(id, step::State::Running, done)])
        .await
        .expect("done");
    let snap = store.load_plan(id).await.expect("load");
    assert_eq!(snap.steps[0].group, Some(progress(TaskState::Succeeded)));
}

async fn a_sender_gets_its_answer_or_withdraws_its_message(store: SharedStore) {
    use std::time::Duration;
    let p = new_plan();
    store.create_plan(p.clone()).await.expect("create");
    let answered = store
        .post(p.id, weft_store::Instruction::Halt)
        .await
        .expect("post");
    let answerer = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            store.reply(answered, weft_store::Reply::Done).await
        })
    };
    assert_eq!(
        weft_store::wait_for_reply(&*store, answered, Duration::from_secs(10))
            .await
            .expect("wait"),
        weft_store::Reply::Done
    );
    assert!(answerer.await.expect("join").expect("reply"));
    // No answer in time: the message is withdrawn, and a late answer is refused.
    let unanswered = store
        .post(p.id, weft_store::Instruction::Halt)
        .await
        .expect("post");
    assert_eq!(
        weft_store::wait_for_reply(&*store, unanswered, Duration::from_millis(30))
            .await
            .expect("wait"),
        weft_store::Reply::Pending
    );
    assert!(matches!(
        store.reply_of(unanswered).await.expect("reply"),
        weft_store::Reply::Refused(_)
    ));
    assert!(!store
        .reply(unanswered, weft_store::Reply::Done)
        .await
        .expect("late answer"));
}

async fn a_plan_is_claimed_only_by_a_claimer_that_can_run_all_its_rust_tasks(store: SharedStore) {
    use weft_model::flow::FlowBuilder;
    let flow = |tasks: &[(&str, &str)]| {
        let mut b = FlowBuilder::unordered("routed");
        for (i, (name, version)) in tasks.iter().enumerate() {
            b = b.task(format!("s{i}"), *name, *version, |t| t);
        }
        b.build().expect("flow")
    };
    let fetch = NewPlan::new(flow(&[("fetch", "1")]), Default::default());
    let both = NewPlan::new(
        flow(&[("fetch", "1"), ("parse", "2"), ("fetch", "1")]),
        Default::default(),
    );
    let commands = NewPlan::new(
        FlowBuilder::linear("commands")
            .command("c", weft_model::command::Command::new(["true"]), |t| t)
            .build()
            .expect("flow"),
        Default::default(),
    );
    for p in [&fetch, &both, &commands] {
        store.create_plan(p.clone()).await.expect("create");
    }
    let claim = |who: &str, can: &[&str]| {
        let (store, who) = (store.clone(), who.to_string());
        let can: Vec<String> = can.iter().map(|c| c.to_string()).collect();
        async move { store.claim_plans(who, 10, can).await.expect("claim") }
    };
    // A claimer with nothing registered takes only the plan of commands.
    assert_eq!(claim("cli", &[]).await, vec![commands.id]);
    // One with `fetch` at another version takes nothing.
    assert!(claim("old", &["fetch@0"]).await.is_empty());
    // One with `fetch@1` but not `parse@2` takes only the first.
    assert_eq!(claim("a", &["fetch@1"]).await, vec![fetch.id]);
    // One with both takes the second.
    assert_eq!(
        claim("b", &["fetch@1", "parse@2", "other@3"]).await,
        vec![both.id]
    );
}

async fn an_unlock_lands_with_the_changes_and_only_for_its_holder(store: SharedStore) {
    let p = new_plan();
    store.create_plan(p.clone()).await.expect("create");
    store
        .acquire_lock(p.id, "node-a".into())
        .await
        .expect("lock");
    // Someone else's unlock leaves the lock alone.
    store
        .apply(
            "test",
            vec![Change::Unlock {
                plan: p.id,
                owner: "node-b".into(),
            }],
        )
        .await
        .expect("apply");
    assert_eq!(
        store.lock_owner(p.id).await.expect("owner"),
        Some("node-a".into())
    );
    // The holder's, written with the plan's end, releases it in the same commit.
    store
        .apply(
            "node-a",
            vec![
                Change::plan_state(p.id, plan::State::Planned, plan::State::Stopped, 5),
                Change::Unlock {
                    plan: p.id,
                    owner: "node-a".into(),
                },
            ],
        )
        .await
        .expect("apply");
    assert_eq!(store.lock_owner(p.id).await.expect("owner"), None);
    assert_eq!(
        store.load_plan(p.id).await.expect("load").plan.state,
        plan::State::Stopped
    );
}

// The job board: TaskFlow's jobboard tests (test_posting_*, test_iterjobs*, priority order),
// plus weft's leases, fencing, attempts and plan-bound completion.

fn new_job(name: &str, priority: Priority) -> NewJob {
    NewJob {
        name: name.into(),
        priority,
        ..NewJob::new(new_plan().flow, BTreeMap::new())
    }
}

fn board_error(e: Error) -> BoardError {
    match e {
        Error::Job(b) => b,
        other => panic!("expected a board error, got {other:?}"),
    }
}

async fn board_ids(store: &SharedStore, filter: JobFilter) -> Vec<JobId> {
    store
        .list_jobs(filter)
        .await
        .expect("list")
        .iter()
        .map(|j| j.id)
        .collect()
}

async fn posting_claim_consume_follow_taskflows_rules(store: SharedStore) {
    let job = store
        .post_job(new_job("j", Priority::Normal))
        .await
        .expect("post");
    assert_eq!(job.state, JobState::Unclaimed);
    assert_eq!(job.owner, None);
    assert_eq!(board_ids(&store, JobFilter::default()).await, vec![job.id]);
    // test_posting_abandon_no_owner
    let e = store
        .release_job(job.id, "me".into(), None, Release::Abandon)
        .await
        .expect_err("abandon unclaimed");
    assert!(matches!(board_error(e), BoardError::NotFound(_)));
    // check_who
    let e = store
        .claim_job(job.id, String::new())
        .await
        .expect_err("empty owner");
    assert_eq!(board_error(e), BoardError::EmptyWho);
    // test_posting_claim
    let claimed = store.claim_job(job.id, "me".into()).await.expect("claim");
    assert_eq!(claimed.state, JobState::Claimed);
    assert_eq!(claimed.owner.as_deref(), Some("me"));
    assert_eq!(claimed.attempts, 1);
    assert_eq!(
        board_ids(
            &store,
            JobFilter {
                only_unclaimed: true,
                ..JobFilter::default()
            }
        )
        .await,
        Vec::<JobId>::new(),
        "iterjobs(only_unclaimed) leaves claimed jobs out"
    );
    assert_eq!(board_ids(&store, JobFilter::default()).await, vec![job.id]);
    // test_posting_claim_same_owner and test_posting_claim_diff_owner
    for who in ["me", "you"] {
        let e = store
            .claim_job(job.id, who.into())
            .await
            .expect_err("claimed");
        assert!(matches!(board_error(e), BoardError::UnclaimableJob(_)));
    }
    // Consume or abandon by someone else: JobFailure; nothing changes.
    for how in [
        Release::Consume,
        Release::Abandon,
        Release::Trash { force: false },
    ] {
        let e = store
            .release_job(job.id, "you".into(), None, how)
            .await
            .expect_err("not the owner");
        assert!(matches!(board_error(e), BoardError::JobFailure(_)));
    }
    assert_eq!(
        store.job(job.id).await.expect("job").owner.as_deref(),
        Some("me")
    );
    // test_posting_claim_consume
    let done = store
        .release_job(job.id, "me".into(), Some(1), Release::Consume)
        .await
        .expect("consume");
    assert_eq!(done.state, JobState::Complete);
    assert!(board_ids(&store, JobFilter::default()).await.is_empty());
    let e = store
        .claim_job(job.id, "you".into())
        .await
        .expect_err("consumed");
    assert!(matches!(board_error(e), BoardError::NotFound(_)));
    let e = store
        .claim_job(JobId::new(), "you".into())
        .await
        .expect_err("unknown");
    assert!(matches!(board_error(e), BoardError::NotFound(_)));
    let steps: Vec<(Option<JobState>, JobState)> = store
        .job_history(job.id)
        .await
        .expect("history")
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(
        steps,
        vec![
            (None, JobState::Unclaimed),
            (Some(JobState::Unclaimed), JobState::Claimed),
            (Some(JobState::Claimed), JobState::Complete)
        ]
    );
}

async fn an_abandoned_job_is_claimable_again_and_trash_is_kept(store: SharedStore) {
    let job = store
        .post_job(new_job("j", Priority::Normal))
        .await
        .expect("post");
    store.claim_job(job.id, "me".into()).await.expect("claim");
    // test_posting_claim_abandon
    let back = store
        .release_job(job.id, "me".into(), Some(1), Release::Abandon)
        .await
        .expect("abandon");
    assert_eq!((back.state, back.owner), (JobState::Unclaimed, None));
    let again = store.claim_job(job.id, "you".into()).await.expect("claim");
    assert_eq!(again.attempts, 2);
    // Trash by the owner: off the board, kept for review.
    store
        .release_job(job.id, "you".into(), None, Release::Trash { force: false })
        .await
        .expect("trash");
    assert!(board_ids(&store, JobFilter::default()).await.is_empty());
    let trash = JobFilter {
        trashed: true,
        ..JobFilter::default()
    };
    assert_eq!(board_ids(&store, trash.clone()).await, vec![job.id]);
    // Back on the board with its attempts reset and a new plan.
    let retried = store.retry_job(job.id, "ops".into()).await.expect("retry");
    assert_eq!((retried.state, retried.attempts), (JobState::Unclaimed, 0));
    assert_ne!(retried.plan, job.plan);
    assert!(board_ids(&store, trash).await.is_empty());
    let e = store
        .retry_job(job.id, "ops".into())
        .await
        .expect_err("not trashed");
    assert!(matches!(board_error(e), BoardError::NotFound(_)));
    // An operator trashes a job that is not theirs only by force, claimed or not.
    store
        .release_job(job.id, "ops".into(), None, Release::Trash { force: true })
        .await
        .expect("forced trash");
    assert_eq!(
        store.job(job.id).await.expect("job").state,
        JobState::Trashed
    );
}

async fn jobs_come_most_urgent_first_then_oldest(store: SharedStore) {
    let mut posted = Vec::new();
    for (name, p) in [
        ("low", Priority::Low),
        ("normal-1", Priority::Normal),
        ("very-high", Priority::VeryHigh),
        ("normal-2", Priority::Normal),
        ("very-low", Priority::VeryLow),
        ("high", Priority::High),
    ] {
        posted.push(store.post_job(new_job(name, p)).await.expect("post"));
    }
    let names: Vec<String> = store
        .list_jobs(JobFilter::default())
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.name)
        .collect();
    assert_eq!(
        names,
        [
            "very-high",
            "high",
            "normal-1",
            "normal-2",
            "low",
            "very-low"
        ]
    );
    // Claims take the same order, in batches.
    let first = store
        .claim_jobs("c".into(), 2, noop())
        .await
        .expect("claim");
    let names: Vec<&str> = first.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["very-high", "high"]);
    assert!(first
        .iter()
        .all(|j| j.attempts == 1 && j.state == JobState::Claimed));
    let rest = store
        .claim_jobs("c".into(), 10, noop())
        .await
        .expect("claim");
    assert_eq!(rest.len(), 4);
    assert!(store
        .claim_jobs("c".into(), 10, noop())
        .await
        .expect("claim")
        .is_empty());
    let limited = JobFilter {
        limit: Some(3),
        ..JobFilter::default()
    };
    assert_eq!(board_ids(&store, limited).await.len(), 3);
    // Counted without reading, and listed by owner.
    assert_eq!(
        store.count_jobs(JobFilter::default()).await.expect("count"),
        6
    );
    let unclaimed = JobFilter {
        only_unclaimed: true,
        ..JobFilter::default()
    };
    assert_eq!(store.count_jobs(unclaimed).await.expect("count"), 0);
    let mine = JobFilter {
        owner: Some("c".into()),
        ..JobFilter::default()
    };
    assert_eq!(store.count_jobs(mine.clone()).await.expect("count"), 6);
    let listed = board_ids(&store, mine).await;
    assert_eq!(listed.len(), 6);
    assert_eq!(
        listed[0], posted[2].id,
        "claim order holds for an owner's jobs"
    );
    let theirs = JobFilter {
        owner: Some("someone else".into()),
        ..JobFilter::default()
    };
    assert!(board_ids(&store, theirs).await.is_empty());
}

async fn a_claimer_gets_only_jobs_whose_tasks_it_runs(store: SharedStore) {
    store
        .post_job(new_job("needs-noop", Priority::High))
        .await
        .expect("post");
    assert!(store
        .claim_jobs("c".into(), 10, vec!["other@1".into()])
        .await
        .expect("claim")
        .is_empty());
    assert_eq!(
        store
            .claim_jobs("c".into(), 10, noop())
            .await
            .expect("claim")
            .len(),
        1
    );
}

async fn a_lost_owner_loses_its_claims_and_a_stale_claim_is_fenced(store: SharedStore) {
    let node = weft_store::NodeRecord {
        id: "conductor/1".into(),
        name: "conductor".into(),
        started_at: 1,
        heartbeat_at: 1,
        report: None,
        process: None,
        capabilities: vec![],
    };
    store.register_node(node.clone()).await.expect("register");
    let job = store
        .post_job(new_job("j", Priority::Normal))
        .await
        .expect("post");
    store
        .claim_job(job.id, node.id.clone())
        .await
        .expect("claim");
    // test_posting_owner_lost: the owner's lease lapsed and it was invalidated.
    store
        .invalidate_node(node.id.clone())
        .await
        .expect("invalidate");
    let lost = store.job(job.id).await.expect("job");
    assert_eq!((lost.state, lost.owner), (JobState::Unclaimed, None));
    // Claimed again under the same name (a restarted conductor): claim 1 is fenced off.
    let again = store
        .claim_job(job.id, node.id.clone())
        .await
        .expect("claim");
    assert_eq!(again.attempts, 2);
    let e = store
        .release_job(job.id, node.id.clone(), Some(1), Release::Consume)
        .await
        .expect_err("stale claim");
    assert!(matches!(board_error(e), BoardError::JobFailure(_)));
    store
        .release_job(job.id, node.id.clone(), Some(2), Release::Consume)
        .await
        .expect("the current claim consumes");
}

async fn a_job_claimed_max_attempts_times_goes_to_the_trash(store: SharedStore) {
    let job = store
        .post_job(NewJob {
            max_attempts: 2,
            ..new_job("flaky", Priority::Normal)
        })
        .await
        .expect("post");
    store.claim_job(job.id, "a".into()).await.expect("claim");
    let back = store
        .release_job(job.id, "a".into(), Some(1), Release::Abandon)
        .await
        .expect("abandon");
    assert_eq!(back.state, JobState::Unclaimed);
    // The second claim's owner dies: no third claim, the job goes to the trash.
    let node = weft_store::NodeRecord {
        id: "b/1".into(),
        name: "b".into(),
        started_at: 1,
        heartbeat_at: 1,
        report: None,
        process: None,
        capabilities: vec![],
    };
    store.register_node(node.clone()).await.expect("register");
    store
        .claim_job(job.id, node.id.clone())
        .await
        .expect("claim");
    store.invalidate_node(node.id).await.expect("invalidate");
    let trashed = store.job(job.id).await.expect("job");
    assert_eq!(trashed.state, JobState::Trashed);
    assert!(
        trashed
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("2 of 2"),
        "{:?}",
        trashed.note
    );
    assert!(store
        .claim_jobs("c".into(), 10, noop())
        .await
        .expect("claim")
        .is_empty());
}

async fn a_stopping_plan_completes_its_claimed_job(store: SharedStore) {
    let job = store
        .post_job(new_job("j", Priority::Normal))
        .await
        .expect("post");
    let claimed = store.claim_job(job.id, "c".into()).await.expect("claim");
    let plan = NewPlan {
        id: claimed.plan,
        ..new_plan()
    };
    store.create_plan(plan).await.expect("create");
    // A job's plan is run by the holder of the job's claim, never claimed as a plain plan.
    assert!(store
        .claim_plans("n".into(), 10, noop())
        .await
        .expect("claim")
        .is_empty());
    let at = now_millis();
    store
        .apply(
            "c",
            vec![
                Change::plan_state(claimed.plan, plan::State::Planned, plan::State::Running, at),
                Change::plan_state(claimed.plan, plan::State::Running, plan::State::Stopped, at),
            ],
        )
        .await
        .expect("stop");
    let done = store.job(job.id).await.expect("job");
    assert_eq!(
        (done.state, done.owner.as_deref()),
        (JobState::Complete, Some("c"))
    );
    let last = store
        .job_history(job.id)
        .await
        .expect("history")
        .pop()
        .expect("an entry");
    assert_eq!(
        (last.from, last.to),
        (Some(JobState::Claimed), JobState::Complete)
    );
}

async fn a_conductors_claim_creates_and_starts_its_jobs_plans(store: SharedStore) {
    let plain = store
        .post_job(new_job("plain", Priority::High))
        .await
        .expect("post");
    let mut limited_job = new_job("limited", Priority::Normal);
    limited_job.flow.limits.queue = Some("q".into());
    let limited = store.post_job(limited_job).await.expect("post");
    let claimed = store
        .claim_jobs_to_run("c".into(), 10, noop())
        .await
        .expect("claim");
    let summary: Vec<(JobId, bool, bool)> = claimed
        .iter()
        .map(|c| (c.job.id, c.plan_created, c.plan_started))
        .collect();
    assert_eq!(
        summary,
        [(plain.id, true, true), (limited.id, true, false)],
        "both plans created; only the one without limits started"
    );
    // The started plan: running since its claim, its steps pending, its lock the claimer's,
    // its start in its history — as the plan a director started.
    let started = &claimed[0].job;
    assert_eq!(claimed[0].job.plan_to_run("c").id, started.plan);
    let snapshot = store.load_plan(started.plan).await.expect("load");
    assert_eq!(snapshot.plan.state, plan::State::Running);
    assert_eq!(snapshot.plan.started_at, Some(started.modified_at));
    assert_eq!(snapshot.plan.created_at, started.modified_at);
    assert_eq!(snapshot.plan.flow, started.flow);
    assert_eq!(snapshot.plan.inputs, started.inputs);
    let steps: Vec<(&str, step::State)> = snapshot
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.state))
        .collect();
    assert_eq!(
        steps,
        [("a", step::State::Pending), ("b", step::State::Pending)]
    );
    assert_eq!(
        store
            .lock_owner(started.plan)
            .await
            .expect("owner")
            .as_deref(),
        Some("c")
    );
    let history = store.history(started.plan).await.expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(
        (
            history[0].from.as_str(),
            history[0].to.as_str(),
            history[0].by.as_deref()
        ),
        ("planned", "running", Some("c"))
    );
    assert_eq!(history[0].data, Some(serde_json::json!({"why": "started"})));
    // The limited plan waits, planned, for its slots; a node's claimer leaves both alone.
    let waiting = store.load_plan(claimed[1].job.plan).await.expect("load");
    assert_eq!(waiting.plan.state, plan::State::Planned);
    assert!(store
        .history(claimed[1].job.plan)
        .await
        .expect("history")
        .is_empty());
    // Abandoned and claimed again: the plan is the earlier claim's, to resume.
    store
        .release_job(plain.id, "c".into(), Some(1), Release::Abandon)
        .await
        .expect("abandon");
    let again = store
        .claim_jobs_to_run("d".into(), 10, noop())
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(
        (
            again[0].job.id,
            again[0].plan_created,
            again[0].plan_started
        ),
        (plain.id, false, false)
    );
    assert_eq!(
        store
            .lock_owner(started.plan)
            .await
            .expect("owner")
            .as_deref(),
        Some("c"),
        "the earlier claimer's lock is not taken by a claim"
    );
    // A plain claim creates nothing.
    let bare = store
        .post_job(new_job("bare", Priority::Low))
        .await
        .expect("post");
    let claimed = store
        .claim_jobs("e".into(), 10, noop())
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert!(matches!(
        store.load_plan(bare.plan).await,
        Err(Error::NotFound(_))
    ));
}

async fn entities_and_bad_ids(store: SharedStore) {
    store
        .register_entity(Entity {
            kind: "conductor".into(),
            name: "c-1".into(),
            metadata: serde_json::json!({"host": "h"}),
        })
        .await
        .expect("register");
    assert!(matches!(
        store
            .register_entity(Entity {
                kind: "worker".into(),
                name: "w".into(),
                metadata: serde_json::Value::Null,
            })
            .await,
        Err(Error::Unsupported(_))
    ));
    assert_eq!(store.entities().await.expect("entities").len(), 1);
    let job = store
        .post_job(new_job("j", Priority::Normal))
        .await
        .expect("post");
    let text = job.id.to_string();
    assert_eq!(
        store
            .resolve_job(text[..13].to_string())
            .await
            .expect("prefix"),
        job.id
    );
    assert!(matches!(
        store.resolve_job("zz".into()).await,
        Err(Error::Job(BoardError::NotFound(_)))
    ));
    assert!(matches!(
        store.job_history(JobId::new()).await,
        Err(Error::Job(BoardError::NotFound(_)))
    ));
}

// Remote workers: messages travel to their topic, are taken once, oldest first; workers
// register, heartbeat and are removed.

fn wire(topic: &str, body: &str) -> weft_store::WireMessage {
    weft_store::WireMessage {
        topic: topic.into(),
        kind: "REQUEST".into(),
        correlation_id: Some("r1".into()),
        reply_to: Some("executor".into()),
        attempt: 2,
        plan: Some(PlanId::new().to_string()),
        body: body.into(),
    }
}

async fn messages_are_taken_once_by_topic_in_order(store: SharedStore) {
    store
        .send_messages(vec![
            wire("w1", "1"),
            wire("w2", "x"),
            wire("w1", "2"),
            wire("w1", "3"),
        ])
        .await
        .expect("send");
    let first = store.take_messages("w1".into(), 2).await.expect("take");
    let bodies: Vec<&str> = first.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["1", "2"]);
    assert_eq!(first[0], wire("w1", "1").clone_with_plan(&first[0]));
    let rest = store.take_messages("w1".into(), 10).await.expect("take");
    assert_eq!(rest.len(), 1);
    assert!(store
        .take_messages("w1".into(), 10)
        .await
        .expect("take")
        .is_empty());
    assert_eq!(
        store
            .take_messages("w2".into(), 10)
            .await
            .expect("take")
            .len(),
        1
    );
    // A body is carried as sent, whatever it holds: its receiver checks it.
    store
        .send_messages(vec![wire("w3", "{not json")])
        .await
        .expect("send");
    assert_eq!(
        store.take_messages("w3".into(), 1).await.expect("take")[0].body,
        "{not json"
    );
}

async fn logs_are_appended_dropped_and_read_in_order(store: SharedStore) {
    use weft_store::{LogChunk, LogKey, LogQuery, LogWrite};
    let plan = weft_model::PlanId::new();
    let key = |step: u32, stream: &str| LogKey {
        plan,
        step,
        attempt: 1,
        task: String::new(),
        action: "execute".into(),
        stream: stream.into(),
    };
    let chunk = |k: LogKey, offset: u64, data: &[u8]| LogChunk {
        key: k,
        offset,
        at: 1,
        data: data.to_vec(),
    };
    store
        .write_logs(LogWrite {
            append: vec![
                chunk(key(0, "stdout"), 0, b"hello\n"),
                chunk(key(0, "stderr"), 0, b"oops\n"),
                chunk(key(0, "stdout"), 6, b"middle\n"),
                chunk(key(1, "stdout"), 0, b"\xff\x00binary"),
            ],
            drop: Vec::new(),
        })
        .await
        .expect("append");
    // The middle of step 0's stdout falls out of its tail window; a new tail comes.
    store
        .write_logs(LogWrite {
            append: vec![chunk(key(0, "stdout"), 13, b"end\n")],
            drop: vec![(key(0, "stdout"), 6)],
        })
        .await
        .expect("drop");
    let all = store
        .read_logs(LogQuery {
            plan,
            ..LogQuery::default()
        })
        .await
        .expect("read");
    let seen: Vec<(u32, &str, u64, &[u8])> = all
        .iter()
        .map(|r| {
            let c = &r.chunk;
            (
                c.key.step,
                c.key.stream.as_str(),
                c.offset,
                c.data.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (0, "stdout", 0, &b"hello\n"[..]),
            (0, "stderr", 0, &b"oops\n"[..]),
            (1, "stdout", 0, &b"\xff\x00binary"[..]),
            (0, "stdout", 13, &b"end\n"[..]),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let only = store
        .read_logs(LogQuery {
            plan,
            step: Some(0),
            stream: Some("stdout".into()),
            after: all[0].id,
            ..LogQuery::default()
        })
        .await
        .expect("read");
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].chunk.data, b"end\n");
}

async fn workers_register_heartbeat_and_go(store: SharedStore) {
    let w = weft_store::WorkerRecord {
        topic: "w1".into(),
        tasks: vec!["fetch@1".into()],
        started_at: 1,
        heartbeat_at: 0,
        process: Some("weft@h:1:2".into()),
        running: 0,
        lease_ms: 2_000,
    };
    store.register_worker(w.clone()).await.expect("register");
    let listed = store.workers().await.expect("workers");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tasks, w.tasks);
    assert_eq!(listed[0].lease_ms, 2_000);
    let first = listed[0].heartbeat_at;
    assert!(first > 0, "the heartbeat is the store's time");
    store
        .worker_heartbeat("w1".into(), 3)
        .await
        .expect("heartbeat");
    let beat = &store.workers().await.expect("workers")[0];
    assert!(beat.heartbeat_at >= first);
    assert_eq!(beat.running, 3);
    store.remove_worker("w1".into()).await.expect("remove");
    assert!(store.workers().await.expect("workers").is_empty());
    assert!(matches!(
        store.worker_heartbeat("w1".into(), 0).await,
        Err(Error::NotFound(_))
    ));
}

trait SamePlan {
    fn clone_with_plan(self, other: &weft_store::WireMessage) -> weft_store::WireMessage;
}

impl SamePlan for weft_store::WireMessage {
    /// The message with `other`'s plan id (a fresh one was made for each).
    fn clone_with_plan(self, other: &weft_store::WireMessage) -> weft_store::WireMessage {
        weft_store::WireMessage {
            plan: other.plan.clone(),
            ..self
        }
    }
}

/// Stores `new`, runs it from planned to stopped, ending at `ended`; returns its id.
async fn stopped_plan(store: &SharedStore, ended: i64) -> PlanId {
    let p = new_plan();
    let id = p.id;
    store.create_plan(p).await.expect("create");
    store
        .apply(
            "test",
            vec![
                Change::plan_state(id, plan::State::Planned, plan::State::Running, ended - 1),
                Change::plan_state(id, plan::State::Running, plan::State::Stopped, ended),
            ],
        )
        .await
        .expect("stop");
    id
}

async fn pruning_deletes_old_stopped_plans_and_everything_of_theirs(store: SharedStore) {
    use weft_store::{LogChunk, LogKey, LogQuery, LogWrite};
    let waited_for = stopped_plan(&store, 100).await;
    let old = stopped_plan(&store, 200).await;
    let older = stopped_plan(&store, 150).await;
    let recent = stopped_plan(&store, 10_000).await;
    let live = new_plan();
    let live_id = live.id;
    store.create_plan(live).await.expect("create");
    // A scheduled plan that waits for `waited_for` keeps it.
    let mut chained = new_plan();
    chained.state = plan::State::Scheduled;
    chained.start_at = Some(now_millis() + 3_600_000);
    chained.after = vec![waited_for];
    let chained_id = chained.id;
    store.create_plan(chained).await.expect("create");
    let key = |plan: PlanId| LogKey {
        plan,
        step: 0,
        attempt: 1,
        task: String::new(),
        action: "execute".into(),
        stream: "stdout".into(),
    };
    let chunk = |plan: PlanId| LogChunk {
        key: key(plan),
        offset: 0,
        at: 1,
        data: b"out\n".to_vec(),
    };
    store
        .write_logs(LogWrite {
            append: vec![chunk(old), chunk(recent)],
            drop: Vec::new(),
        })
        .await
        .expect("logs");

    // Oldest first, at most the limit.
    let first = store.prune_plans(5_000, 1).await.expect("prune");
    assert_eq!(first, vec![older]);
    let rest = store.prune_plans(5_000, 10).await.expect("prune");
    assert_eq!(rest, vec![old], "the waited-for plan stays");
    assert!(store
        .prune_plans(5_000, 10)
        .await
        .expect("prune")
        .is_empty());
    for gone in [old, older] {
        assert!(matches!(
            store.load_plan(gone).await,
            Err(weft_store::Error::NotFound(_))
        ));
        assert!(store
            .history(gone)
            .await
            .map(|h| h.is_empty())
            .unwrap_or(true));
    }
    let logs = |plan: PlanId| LogQuery {
        plan,
        ..LogQuery::default()
    };
    assert!(store.read_logs(logs(old)).await.expect("read").is_empty());
    assert_eq!(store.read_logs(logs(recent)).await.expect("read").len(), 1);
    for kept in [waited_for, recent, live_id, chained_id] {
        store.load_plan(kept).await.expect("kept");
    }
    let listed = store.list_plans(PlanFilter::default()).await.expect("list");
    assert_eq!(listed.len(), 4);
}

async fn an_idempotency_key_stores_one_plan_within_its_window(store: SharedStore) {
    let day = 86_400_000;
    let first = new_plan();
    let first_id = first.id;
    let held = store
        .create_plan_once(first, "nightly-2030-01-01".into(), day)
        .await
        .expect("create");
    assert_eq!(held, first_id);
    let again = store
        .create_plan_once(new_plan(), "nightly-2030-01-01".into(), day)
        .await
        .expect("create again");
    assert_eq!(again, first_id, "the same key answers the first plan");
    let other = new_plan();
    let other_id = other.id;
    assert_eq!(
        store
            .create_plan_once(other, "nightly-2030-01-02".into(), day)
            .await
            .expect("another key"),
        other_id
    );
    assert_eq!(
        store
            .list_plans(PlanFilter::default())
            .await
            .expect("list")
            .len(),
        2
    );
    // Past the window the key is free again.
    let late = new_plan();
    let late_id = late.id;
    assert_eq!(
        store
            .create_plan_once(late, "nightly-2030-01-01".into(), 0)
            .await
            .expect("after the window"),
        late_id
    );
    assert_eq!(
        store
            .list_plans(PlanFilter::default())
            .await
            .expect("list")
            .len(),
        3
    );
    // Many at once from one process (one writer's batch): one plan per key, every caller told
    // the holder.
    let mut asking = Vec::new();
    for i in 0..40 {
        let plan = new_plan();
        asking.push((
            plan.id,
            store.create_plan_once(plan, format!("burst-{}", i % 4), day),
        ));
    }
    let mut holders = std::collections::BTreeMap::new();
    for (i, (id, answer)) in asking.into_iter().enumerate() {
        let held = answer.await.expect("create in a burst");
        let first = *holders.entry(i % 4).or_insert(held);
        assert_eq!(held, first, "one holder per key");
        if i < 4 {
            assert_eq!(held, id, "the first asker of each key gets it");
        }
    }
    assert_eq!(
        store
            .list_plans(PlanFilter::default())
            .await
            .expect("list")
            .len(),
        7
    );
}

async fn a_schedule_fires_each_tick_once_and_minds_overlap(store: SharedStore) {
    use weft_model::schedule::{CatchUp, Overlap};
    use weft_store::ScheduleRecord;
    let t0 = 1_900_000_000_000; // a whole second
    let schedule = |name: &str, overlap| ScheduleRecord {
        name: name.into(),
        flow: new_plan().flow,
        inputs: BTreeMap::from([("x".to_string(), serde_json::json!(1))]),
        cron: "* * * * * *".into(),
        timezone: "UTC".into(),
        overlap,
        catch_up: CatchUp::None,
        paused: false,
        next_at: Some(t0),
        last_plan: None,
    };
    store
        .put_schedule(schedule("skip", Overlap::Skip))
        .await
        .expect("put");
    store
        .put_schedule(schedule("allow", Overlap::Allow))
        .await
        .expect("put");
    assert!(
        store
            .fire_schedules(t0 - 1, None)
            .await
            .expect("fire")
            .is_empty(),
        "not due"
    );
    let fired = store.fire_schedules(t0 + 500, None).await.expect("fire");
    let names: Vec<&str> = fired.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["allow", "skip"]);
    assert!(
        store
            .fire_schedules(t0 + 500, None)
            .await
            .expect("fire")
            .is_empty(),
        "once per tick"
    );
    // The next tick: `skip`'s plan has not stopped, so it skips; `allow` fires anyway.
    let fired = store.fire_schedules(t0 + 1_200, None).await.expect("fire");
    assert_eq!(
        fired.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        vec!["allow"]
    );
    let listed = store.schedules().await.expect("list");
    assert_eq!(listed.len(), 2);
    let skip = listed.iter().find(|s| s.name == "skip").expect("skip");
    assert_eq!(skip.next_at, Some(t0 + 2_000), "the skipped tick is gone");
    let plan = store
        .load_plan(skip.last_plan.expect("its plan"))
        .await
        .expect("load");
    assert_eq!(plan.plan.inputs["x"], serde_json::json!(1));
    // Paused: nothing; a trigger fires once, paused or not, and leaves the ticks as they were.
    let mut paused = skip.clone();
    paused.paused = true;
    store.put_schedule(paused).await.expect("pause");
    store.remove_schedule("allow".into()).await.expect("remove");
    assert!(store
        .fire_schedules(t0 + 5_000, None)
        .await
        .expect("fire")
        .is_empty());
    let fired = store
        .fire_schedules(t0 + 5_000, Some("skip".into()))
        .await
        .expect("trigger");
    assert_eq!(fired.len(), 1);
    assert_eq!(
        store.schedules().await.expect("list")[0].next_at,
        Some(t0 + 2_000)
    );
    assert!(matches!(
        store.fire_schedules(t0, Some("allow".into())).await,
        Err(weft_store::Error::NotFound(_))
    ));
    assert!(matches!(
        store.remove_schedule("allow".into()).await,
        Err(weft_store::Error::NotFound(_))
    ));
}

/// A plan locked by `owner`, for slot requests.
async fn locked_plan(store: &SharedStore, owner: &str) -> PlanId {
    let p = new_plan();
    store.create_plan(p.clone()).await.expect("create");
    store.acquire_lock(p.id, owner.into()).await.expect("lock");
    p.id
}

fn slot_request(plan: PlanId, owner: &str, key: &str, queue: bool) -> weft_store::SlotRequest {
    use weft_model::limit::SlotWant;
    let mut wants = vec![SlotWant {
        scope: "flow:f".into(),
        key: key.into(),
        limit: Some(2),
    }];
    if queue {
        wants.push(SlotWant {
            scope: "queue:q".into(),
            key: key.into(),
            limit: None,
        });
    }
    weft_store::SlotRequest {
        plan,
        step: None,
        owner: owner.into(),
        wants,
    }
}

async fn slots_hold_limits_in_line_and_go_with_their_owner(store: SharedStore) {
    use weft_store::SlotAnswer;
    let mut plans = Vec::new();
    for _ in 0..4 {
        plans.push(locked_plan(&store, "node-a").await);
    }
    let ask =
        |plan: PlanId, key: &str| store.acquire_slots(slot_request(plan, "node-a", key, false));
    // Limit 2 per key: two granted, the third waits in line, another key goes at once.
    assert_eq!(ask(plans[0], "a").await.expect("ask"), SlotAnswer::Granted);
    assert_eq!(ask(plans[1], "a").await.expect("ask"), SlotAnswer::Granted);
    match ask(plans[2], "a").await.expect("ask") {
        SlotAnswer::Waiting { on, retry } => {
            assert_eq!(
                on,
                "a slot in flow `f` for key `a` (limit 2): 2 of 2 held, 0 ahead in line"
            );
            assert_eq!(retry, 0);
        }
        other => panic!("expected to wait, got {other:?}"),
    }
    assert_eq!(ask(plans[3], "b").await.expect("ask"), SlotAnswer::Granted);
    // Asking again is idempotent.
    assert_eq!(ask(plans[0], "a").await.expect("ask"), SlotAnswer::Granted);
    let rows = store.slots_of(plans[2]).await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].held);
    assert!(rows[0]
        .why
        .as_deref()
        .is_some_and(|w| w.contains("2 of 2 held")));
    // A release with the plan's changes frees the slot for the next in line.
    store
        .apply(
            "node-a",
            vec![Change::Release {
                plan: plans[0],
                step: None,
            }],
        )
        .await
        .expect("release");
    assert!(store.slots_of(plans[0]).await.expect("rows").is_empty());
    assert_eq!(ask(plans[2], "a").await.expect("ask"), SlotAnswer::Granted);
    // Not the lock holder: nothing is asked.
    assert_eq!(
        store
            .acquire_slots(slot_request(plans[1], "node-b", "a", false))
            .await
            .expect("ask"),
        SlotAnswer::Gone
    );
    // The owner's lease lapses: its slots go with its locks.
    store
        .invalidate_node("node-a".into())
        .await
        .expect("invalidate");
    for p in &plans {
        assert!(store.slots_of(*p).await.expect("rows").is_empty());
    }
}

async fn a_queue_limits_across_keys_and_paces_its_rate(store: SharedStore) {
    use weft_model::limit::Rate;
    use weft_store::{QueueRecord, SlotAnswer};
    let now = weft_model::now_millis();
    store
        .put_queue(QueueRecord::new("q".into(), Some(1), None, now))
        .await
        .expect("put");
    let a = locked_plan(&store, "n").await;
    let b = locked_plan(&store, "n").await;
    assert_eq!(
        store
            .acquire_slots(slot_request(a, "n", "x", true))
            .await
            .expect("ask"),
        SlotAnswer::Granted
    );
    // Key y has its own concurrency line but the queue allows one in all.
    match store
        .acquire_slots(slot_request(b, "n", "y", true))
        .await
        .expect("ask")
    {
        SlotAnswer::Waiting { on, .. } => assert!(on.contains("queue `q`"), "{on}"),
        other => panic!("expected to wait, got {other:?}"),
    }
    let listed = store.queues().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].held, listed[0].waiting), (1, 1));
    // A rate of 1 per hour and no limit: one grant, then a wait saying when.
    store
        .put_queue(QueueRecord::new(
            "q".into(),
            None,
            Some(Rate {
                count: 1,
                per: std::time::Duration::from_secs(3600),
            }),
            now,
        ))
        .await
        .expect("put");
    assert_eq!(
        store
            .acquire_slots(slot_request(b, "n", "y", true))
            .await
            .expect("ask"),
        SlotAnswer::Granted
    );
    let c = locked_plan(&store, "n").await;
    match store
        .acquire_slots(slot_request(c, "n", "z", true))
        .await
        .expect("ask")
    {
        SlotAnswer::Waiting { on, retry } => {
            assert!(on.contains("rate (1/h) is used up"), "{on}");
            assert!(retry > 3_500_000, "{retry}");
        }
        other => panic!("expected to wait, got {other:?}"),
    }
    store.remove_queue("q".into()).await.expect("remove");
    assert!(matches!(
        store.remove_queue("q".into()).await,
        Err(Error::NotFound(_))
    ));
    // Without settings the queue does not hold anyone back.
    assert_eq!(
        store
            .acquire_slots(slot_request(c, "n", "z", true))
            .await
            .expect("ask"),
        SlotAnswer::Granted
    );
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        let (_guard, store) = $make;
                        super::$name(store).await;
                    }
                };
            }
            case!(creates_and_loads_a_plan);
            case!(applies_changes_and_records_history);
            case!(a_fenced_write_that_finds_another_state_lands_nothing);
            case!(one_callers_conflict_does_not_fail_another);
            case!(lists_plans_with_derived_results);
            case!(resolves_id_prefixes);
            case!(execution_locks_have_one_owner);
            case!(claims_only_waiting_unlocked_uninhibited_plans);
            case!(dead_nodes_are_invalidated_and_their_locks_released);
            case!(due_plans_are_promoted_once_and_failed_prerequisites_reported);
            case!(the_mailbox_delivers_to_the_lock_holder_and_answers_once);
            case!(keeps_a_running_groups_progress);
            case!(a_reply_lands_with_the_changes_it_answers_or_not_at_all);
            case!(a_sender_gets_its_answer_or_withdraws_its_message);
            case!(a_plan_is_claimed_only_by_a_claimer_that_can_run_all_its_rust_tasks);
            case!(an_unlock_lands_with_the_changes_and_only_for_its_holder);
            case!(posting_claim_consume_follow_taskflows_rules);
            case!(an_abandoned_job_is_claimable_again_and_trash_is_kept);
            case!(jobs_come_most_urgent_first_then_oldest);
            case!(a_claimer_gets_only_jobs_whose_tasks_it_runs);
            case!(a_lost_owner_loses_its_claims_and_a_stale_claim_is_fenced);
            case!(a_job_claimed_max_attempts_times_goes_to_the_trash);
            case!(a_stopping_plan_completes_its_claimed_job);
            case!(a_conductors_claim_creates_and_starts_its_jobs_plans);
            case!(entities_and_bad_ids);
            case!(messages_are_taken_once_by_topic_in_order);
            case!(workers_register_heartbeat_and_go);
            case!(logs_are_appended_dropped_and_read_in_order);
            case!(pruning_deletes_old_stopped_plans_and_everything_of_theirs);
            case!(an_idempotency_key_stores_one_plan_within_its_window);
            case!(a_schedule_fires_each_tick_once_and_minds_overlap);
            case!(slots_hold_limits_in_line_and_go_with_their_owner);
            case!(a_queue_limits_across_keys_and_paces_its_rate);
        }
    };
}

conformance!(
    memory,
    (
        (),
        Arc::new(weft_store::memory::MemoryStore::new()) as SharedStore
    )
);
conformance!(sqlite, {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = weft_store::sqlite::SqliteStore::open(&dir.path().join("weft.db")).expect("open");
    (dir, Arc::new(store) as SharedStore)
});
conformance!(postgres, {
    let url = weft_testpg::url();
    let store = weft_store::postgres::PostgresStore::open(&url)
        .await
        .expect("open");
    ((), Arc::new(store) as SharedStore)
});
