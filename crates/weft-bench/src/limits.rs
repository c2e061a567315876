//! What concurrency limits and idempotency keys cost: the concurrent scenarios (1,000 plans ×
//! 10 no-op steps at once, one engine) run twice per sample on fresh stores — plainly, and with
//! a flow-level limit per tenant (100 tenants, limit 10 each: every plan asks for and gives
//! back a slot, none waits) and an idempotency key per submission — alternating. Each sample
//! is the second's throughput over the first's, from submission to the last plan's end.

use crate::support::{execute_all, futures_join, noop_flow, noop_registry, NOOP_PARALLELISM};
use crate::{Error, Figure};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;
use weft_engine::{Config, Engine};
use weft_model::flow::{Flow, FlowBuilder};
use weft_store::{NewPlan, SharedStore};

const PLANS: usize = 1000;
/// Keys of the limit: each holds `PLANS / TENANTS` plans at once, its limit.
const TENANTS: usize = 100;
const STEPS: usize = 10;

/// Steps per second, submission included: plain or limited and keyed.
async fn run(store: SharedStore, flow: &Flow, keyed: bool) -> Result<f64, Error> {
    let config = Config {
        parallelism: NOOP_PARALLELISM,
        ..Config::default()
    };
    let engine = Engine::start(store.clone(), noop_registry(), config);
    let started = Instant::now();
    let creating: Vec<_> = (0..PLANS)
        .map(|i| {
            let inputs = BTreeMap::from([(
                "tenant".to_string(),
                serde_json::Value::String(format!("t{}", i % TENANTS)),
            )]);
            let (store, new) = (store.clone(), NewPlan::new(flow.clone(), inputs));
            async move {
                let id = new.id;
                if keyed {
                    store
                        .create_plan_once(new, format!("bench-{i}"), 86_400_000)
                        .await
                } else {
                    store.create_plan(new).await.map(|()| id)
                }
            }
        })
        .collect();
    let ids = futures_join(creating)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    execute_all(engine, ids).await?;
    Ok((PLANS * STEPS) as f64 / started.elapsed().as_secs_f64())
}

/// The ratio figure, each sample on two fresh stores from `fresh`.
pub(crate) async fn cost<F, Fut>(name: &'static str, repeat: u32, fresh: F) -> Result<Figure, Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(SharedStore, Box<dyn Send>), Error>>,
{
    let plain = noop_flow(FlowBuilder::linear("bench").input("tenant", None), STEPS);
    let limited = noop_flow(
        FlowBuilder::linear("bench")
            .input("tenant", None)
            .concurrency("${inputs.tenant}", (PLANS / TENANTS) as u32),
        STEPS,
    );
    let mut samples = Vec::new();
    for i in 0..repeat {
        // Alternate which goes first: the machine's noise falls on both.
        let mut pair = [0.0; 2];
        for k in 0..2 {
            let keyed = (i + k) % 2 == 1;
            let (store, _keep) = fresh().await?;
            let flow = if keyed { &limited } else { &plain };
            pair[usize::from(keyed)] = run(store, flow, keyed).await?;
        }
        samples.push(pair[1] / pair[0]);
    }
    Ok(Figure {
        name,
        unit: "× plain",
        samples,
        target: 0.85,
        higher_is_better: true,
    })
}
