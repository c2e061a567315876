//! Scenarios of a node (`weft serve`'s loop) on SQLite: event round trips and plan starts.

use crate::support::{futures_join, spawn_node, Backend, Scratch};
use crate::{Error, Figure};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_engine::{task_fn, Registry};
use weft_model::flow::FlowBuilder;

/// Median milliseconds from posting an event for a suspended step (as `weft event` does) to
/// seeing its answer, with the step's success durable.
pub(crate) async fn event_rtt(repeat: u32) -> Result<Figure, Error> {
    const EVENTS: usize = 100;
    let scratch = Scratch::new(Backend::Sqlite)?;
    let store = scratch.store.clone();
    let flow = FlowBuilder::linear("gate")
        .gate("wait", None, |t| t)
        .build()
        .expect("a generated flow is valid");
    let mut ids = Vec::new();
    for _ in 0..EVENTS * repeat as usize {
        let new = weft_store::NewPlan::new(flow.clone(), BTreeMap::new());
        ids.push(new.id);
        store.create_plan(new).await?;
    }
    let node = spawn_node(store.clone(), Registry::new());
    let mut samples = Vec::new();
    for chunk in ids.chunks(EVENTS) {
        let mut rtts = Vec::with_capacity(EVENTS);
        for &id in chunk {
            // Wait until the gate is suspended.
            loop {
                let snap = store.load_plan(id).await?;
                if snap.steps[0].state == weft_model::step::State::Suspended {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let t = Instant::now();
            let instruction = weft_store::Instruction::Event {
                step: 0,
                data: json!({"ok": true}),
                optional: false,
            };
            let message = store.post(id, instruction).await?;
            let reply =
                weft_store::wait_for_reply(&*store, message, Duration::from_secs(10)).await?;
            if reply != weft_store::Reply::Done {
                return Err(Error::Failed(format!(
                    "benchmark event was not taken: {reply:?}"
                )));
            }
            rtts.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        samples.push(crate::support::median(rtts));
    }
    node.stop().await;
    Ok(Figure {
        name: "event-rtt",
        unit: "ms",
        samples,
        target: 2.0,
        higher_is_better: false,
    })
}

/// Plans per second a node starts and finishes, submitted through the store beforehand.
pub(crate) async fn plan_starts(repeat: u32) -> Result<Figure, Error> {
    const PLANS: usize = 10_000;
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let scratch = Scratch::new(Backend::Sqlite)?;
        let store = scratch.store.clone();
        // Two no-op steps, then one that counts finished plans.
        let flow = FlowBuilder::linear("starts")
            .task("s0", "noop", "1", |t| t)
            .task("s1", "noop", "1", |t| t)
            .task("s2", "count", "1", |t| t)
            .build()
            .expect("a generated flow is valid");
        let submitting: Vec<_> = (0..PLANS)
            .map(|_| {
                let (store, flow) = (store.clone(), flow.clone());
                async move {
                    store
                        .create_plan(weft_store::NewPlan::new(flow, BTreeMap::new()))
                        .await
                }
            })
            .collect();
        for r in futures_join(submitting).await {
            r?;
        }
        let done = Arc::new(AtomicUsize::new(0));
        let mut registry = Registry::new();
        registry.register("noop", "1", task_fn(|_| async { Ok(json!({})) }));
        let d = done.clone();
        registry.register(
            "count",
            "1",
            task_fn(move |_| {
                let d = d.clone();
                async move {
                    d.fetch_add(1, Ordering::SeqCst);
                    Ok(json!({}))
                }
            }),
        );
        let t = Instant::now();
        let node = spawn_node(store.clone(), registry);
        while done.load(Ordering::SeqCst) < PLANS {
            if t.elapsed() > Duration::from_secs(300) {
                return Err(Error::Failed(format!(
                    "only {} of {PLANS} plans finished in 300 s",
                    done.load(Ordering::SeqCst)
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(PLANS as f64 / t.elapsed().as_secs_f64());
        node.stop().await;
    }
    Ok(Figure {
        name: "plan-starts",
        unit: "plans/s",
        samples,
        target: 5000.0,
        higher_is_better: true,
    })
}
