//! Who holds a plan's execution lock when `weft run` or `weft plans resume` executes it, and
//! whether that holder is still alive: `weft@HOST:PID:START`, where START is the process's
//! start time in clock ticks since boot, so that a reused pid is not mistaken for the holder.

/// How old a node's heartbeat may be for the CLI to still count it alive. Nodes declare each
/// other dead after their (shorter) lease; this only decides whether to wait for an answer.
const NODE_SILENCE: i64 = 60_000;

/// Whether the holder of an execution lock is alive: a `weft run` process that still exists,
/// or a node whose heartbeat is recent.
pub async fn is_alive(
    store: &weft_store::SharedStore,
    holder: &str,
) -> Result<bool, weft_store::Error> {
    if holder.starts_with("weft@") {
        return Ok(!is_dead(holder));
    }
    let now = weft_model::now_millis();
    Ok(store
        .nodes()
        .await?
        .iter()
        .any(|n| n.id == holder && now - n.heartbeat_at < NODE_SILENCE))
}

/// This process's lock-owner name.
pub fn me() -> String {
    let pid = std::process::id();
    format!("weft@{}:{pid}:{}", hostname(), start_time(pid).unwrap_or(0))
}

/// Whether `owner` names a process on this host that is gone. Owners on other hosts, or in a
/// form this build does not know, are presumed alive.
pub fn is_dead(owner: &str) -> bool {
    let Some(rest) = owner.strip_prefix("weft@") else {
        return false;
    };
    let mut parts = rest.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return false;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    start_time(pid) != Some(start)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Field 22 of /proc/PID/stat: the process's start time.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        assert!(!is_dead(&me()));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        let owner = format!("weft@{}:{pid}:{}", hostname(), start_time(pid).unwrap_or(1));
        child.wait().expect("wait");
        assert!(is_dead(&owner));
        assert!(
            !is_dead("weft@another-host:1:1"),
            "other hosts are presumed alive"
        );
    }
}
