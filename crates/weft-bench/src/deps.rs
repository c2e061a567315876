//! Scenarios of the dependency engine: starting 1,000 manifolds, and bouncing a root under
//! 1,000 dependents.

use crate::{Error, Figure};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An engine whose restarts wait for nothing, so that a figure is the engine's own cost.
pub(crate) fn deps_config() -> weft_deps::EngineConfig {
    let mut config = weft_deps::EngineConfig::juju(|_| false);
    config.bounce_delay = Duration::ZERO;
    config.error_delay = Duration::ZERO;
    config
}

/// A manifold whose worker idles, counting its starts and exposing a unit resource.
pub(crate) fn counted_manifold(inputs: &[&str], starts: &Arc<AtomicUsize>) -> weft_deps::Manifold {
    let starts = starts.clone();
    let names: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
    weft_deps::Manifold::new(inputs, move |ctx| {
        let (starts, names) = (starts.clone(), names.clone());
        async move {
            for n in &names {
                ctx.exists(n)?;
            }
            starts.fetch_add(1, Ordering::SeqCst);
            Ok(weft_deps::TaskWorker::idle() as Arc<dyn weft_deps::Worker>)
        }
    })
    .with_output(|_| Ok(Arc::new(()) as weft_deps::Resource))
}

pub(crate) async fn wait_for_count(count: &AtomicUsize, want: usize) -> Result<(), Error> {
    let t = Instant::now();
    while count.load(Ordering::SeqCst) < want {
        if t.elapsed() > Duration::from_secs(30) {
            return Err(Error::Failed(format!(
                "only {} of {want} manifolds started",
                count.load(Ordering::SeqCst)
            )));
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

pub(crate) async fn deps_start(repeat: u32) -> Result<Figure, Error> {
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let engine = weft_deps::DependencyEngine::new(deps_config()).map_err(Error::Failed)?;
        let starts = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        for chain in 0..100 {
            for depth in 0..10 {
                let name = format!("c{chain}d{depth}");
                let input = format!("c{chain}d{}", depth.max(1) - 1);
                let inputs: Vec<&str> = if depth == 0 {
                    vec![]
                } else {
                    vec![input.as_str()]
                };
                engine
                    .install(&name, counted_manifold(&inputs, &starts))
                    .await
                    .map_err(|e| Error::Failed(e.to_string()))?;
            }
        }
        wait_for_count(&starts, 1000).await?;
        // A start can be counted and then bounced: the report is the judge.
        while engine
            .report()
            .await
            .manifolds
            .values()
            .any(|m| m.state != weft_deps::State::Started)
        {
            if t.elapsed() > Duration::from_secs(30) {
                return Err(Error::Failed(
                    "not every manifold started within 30 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        engine.kill();
        engine
            .wait()
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
    }
    Ok(Figure {
        name: "deps-start",
        unit: "ms",
        samples,
        target: 50.0,
        higher_is_better: false,
    })
}

pub(crate) async fn deps_bounce(repeat: u32) -> Result<Figure, Error> {
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let engine = weft_deps::DependencyEngine::new(deps_config()).map_err(Error::Failed)?;
        let starts = Arc::new(AtomicUsize::new(0));
        let (bounce_tx, bounce_rx) = tokio::sync::watch::channel(0u32);
        let root_starts = starts.clone();
        let root = weft_deps::Manifold::new(&[], move |_ctx| {
            let (root_starts, mut bounce) = (root_starts.clone(), bounce_rx.clone());
            async move {
                root_starts.fetch_add(1, Ordering::SeqCst);
                let seen = *bounce.borrow_and_update();
                let w: Arc<dyn weft_deps::Worker> =
                    weft_deps::TaskWorker::spawn(move |mut stop| async move {
                        tokio::select! {
                            _ = stop.requested() => Ok(()),
                            _ = bounce.wait_for(|b| *b != seen) => Err(weft_deps::Error::Bounce),
                        }
                    });
                Ok(w)
            }
        })
        .with_output(|_| Ok(Arc::new(()) as weft_deps::Resource));
        engine
            .install("root", root)
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
        for i in 0..1000 {
            engine
                .install(&format!("dep{i}"), counted_manifold(&["root"], &starts))
                .await
                .map_err(|e| Error::Failed(e.to_string()))?;
        }
        wait_for_count(&starts, 1001).await?;
        // Let stragglers settle, then bounce the root.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = starts.load(Ordering::SeqCst);
        let t = Instant::now();
        let _ = bounce_tx.send(1);
        wait_for_count(&starts, before + 1001).await?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        engine.kill();
        engine
            .wait()
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
    }
    Ok(Figure {
        name: "deps-bounce",
        unit: "ms",
        samples,
        target: 50.0,
        higher_is_better: false,
    })
}
