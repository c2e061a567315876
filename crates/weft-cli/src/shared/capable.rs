//! Whether some live node can run what a plan or a job needs: the line `plans show` and `jobs
//! show` print when the answer is no (`waiting for a node that runs \`fetch\`@1`).

use super::Fail;
use weft_store::SharedStore;

/// Why work needing the Rust tasks `needs` (`name@version`) waits: no live node has registered
/// them all. `None` when it needs none, or some live node runs them all.
pub(crate) async fn unmet(store: &SharedStore, needs: &[String]) -> Result<Option<String>, Fail> {
    if needs.is_empty() {
        return Ok(None);
    }
    let live = weft_engine::owner::live_nodes(store).await?;
    if live
        .iter()
        .any(|n| needs.iter().all(|x| n.capabilities.contains(x)))
    {
        return Ok(None);
    }
    let named = |need: &String| match need.rsplit_once('@') {
        Some((task, version)) => format!("`{task}`@{version}"),
        None => format!("`{need}`"),
    };
    let nowhere: Vec<String> = needs
        .iter()
        .filter(|x| !live.iter().any(|n| n.capabilities.contains(x)))
        .map(named)
        .collect();
    Ok(Some(if nowhere.is_empty() {
        format!(
            "waiting for a node that runs all of {}",
            needs.iter().map(named).collect::<Vec<_>>().join(", ")
        )
    } else {
        format!("waiting for a node that runs {}", nowhere.join(", "))
    }))
}
