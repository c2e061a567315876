//! What a dead run left running on this machine, found by the marker every task process
//! carries in its environment (children inherit it), and ended before anything of the plan
//! runs again.
//!
//! The reaper normally kills a dead run's tasks within milliseconds; this is the second line:
//! a reaper that was itself killed, or a takeover faster than the reaper. It finds even a
//! process started just before the crash, whose pid was never stored — no stale pid is ever
//! trusted. Processes on another machine cannot be reached: a dead node's tasks there are
//! presumed dead with their machine (the README says what a user can rely on).

use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_model::PlanId;

/// The variable that marks every process weft starts for a task:
/// `<plan>/<step>/<group task>` (the group task empty for a step's own command).
pub(crate) const MARKER: &str = "WEFT_PROCESS";

/// How long a killed leftover may take to be gone before weft goes on regardless.
const GONE_WITHIN: Duration = Duration::from_secs(2);

/// The marker of the processes of `task` (or, empty, the command) of `step` of `plan`.
pub(crate) fn marker(plan: PlanId, step: u32, task: &str) -> String {
    format!("{plan}/{step}/{task}")
}

/// Kills what is left on this machine of `plan`'s processes (of one `step`, or of all), and
/// waits until they are gone, so that what they held (a port, a file lock) is free; returns
/// how many process groups were killed.
pub(crate) async fn end_leftovers(plan: PlanId, step: Option<u32>) -> usize {
    let prefix = match step {
        Some(step) => marker(plan, step, ""),
        None => format!("{plan}/"),
    };
    let wanted = format!("{MARKER}={prefix}");
    let marked = scan_since(Instant::now()).await;
    let found: Vec<Marked> = marked
        .iter()
        .filter(|m| m.marker.starts_with(&wanted))
        .cloned()
        .collect();
    let found = tokio::task::spawn_blocking(move || {
        for m in &found {
            m.kill();
        }
        let pids: Vec<u32> = found.iter().map(|m| m.pid).collect();
        wait_gone(&pids);
        pids
    })
    .await
    .unwrap_or_default();
    if !found.is_empty() {
        tracing::info!(
            "plan {plan}: killed {} process(es) left running by an earlier run",
            found.len()
        );
    }
    found.len()
}

/// A process of this machine that carries a marker.
#[derive(Clone)]
struct Marked {
    pid: u32,
    /// Its process group, when it has one apart from this process's.
    pgid: Option<u32>,
    /// `WEFT_PROCESS=…`, as its environment holds it.
    marker: String,
}

impl Marked {
    /// SIGKILLs its process group (or the process alone, if it has none of its own).
    fn kill(&self) {
        match self.pgid {
            Some(pgid) => super::kill_group(pgid),
            // SAFETY: kill(2) touches no memory.
            None => unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            },
        }
    }
}

/// The last scan of the process table and when it began.
type Scan = Option<(Instant, Arc<Vec<Marked>>)>;

/// Every marked process of this machine, from a scan that began no earlier than `since`.
///
/// Reading every process's environment is the costly part of a takeover; a node that takes
/// over many plans at once (its restart after a crash) shares scans instead of making one per
/// plan: a caller waits for the scan under way and reuses the next one, which began after it
/// asked — so a process started just before the crash is still seen. A burst of takeovers
/// costs two scans at most.
async fn scan_since(since: Instant) -> Arc<Vec<Marked>> {
    static LAST: tokio::sync::Mutex<Scan> = tokio::sync::Mutex::const_new(None);
    // An async lock, held across the scan on purpose: scans run one at a time.
    let mut last = LAST.lock().await;
    if let Some((began, marked)) = last.as_ref() {
        if *began >= since {
            return marked.clone();
        }
    }
    let began = Instant::now();
    let marked = Arc::new(
        tokio::task::spawn_blocking(read_marked)
            .await
            .unwrap_or_default(),
    );
    *last = Some((began, marked.clone()));
    marked
}

/// Reads the process table: every process whose environment carries the marker.
fn read_marked() -> Vec<Marked> {
    let wanted = format!("{MARKER}=");
    // SAFETY: getpgrp has no preconditions.
    let own = unsafe { libc::getpgrp() };
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes of other users cannot be read; they are not ours.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let Some(marker) = environ
            .split(|&b| b == 0)
            .find(|var| var.starts_with(wanted.as_bytes()))
        else {
            continue;
        };
        // SAFETY: getpgid only reads the process table.
        let pgid = unsafe { libc::getpgid(pid as libc::pid_t) };
        found.push(Marked {
            pid,
            pgid: (pgid > 1 && pgid != own).then_some(pgid as u32),
            marker: String::from_utf8_lossy(marker).into_owned(),
        });
    }
    found
}

/// Whether process `pid` is alive (a zombie is not).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Blocks until every process of `pids` is gone, or [`GONE_WITHIN`] has passed.
fn wait_gone(pids: &[u32]) {
    let deadline = std::time::Instant::now() + GONE_WITHIN;
    while pids.iter().any(|&p| is_alive(p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leftovers_are_found_by_their_marker_and_killed_with_their_children() {
        let plan = PlanId::new();
        use std::os::unix::process::CommandExt;
        let spawn = |step: u32| {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", "sleep 30 & echo $! > /dev/null; sleep 30; wait"])
                .env(MARKER, marker(plan, step, "server"))
                .process_group(0);
            c.spawn().expect("spawn")
        };
        let mut ours = spawn(3);
        let mut other = spawn(30);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let killed = end_leftovers(plan, Some(3)).await;
        assert!(killed >= 1, "{killed}");
        let _ = ours.wait();
        assert!(!is_alive(ours.id()));
        // Another step's processes (a prefix of a longer number) are left alone.
        assert!(is_alive(other.id()), "step 30 is not step 3");
        // The whole plan's.
        assert!(end_leftovers(plan, None).await >= 1);
        let _ = other.wait();
        assert!(!is_alive(other.id()));
        // A process started after the last scan is seen by the next takeover: scans are
        // shared, never stale.
        let mut late = spawn(4);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(end_leftovers(plan, Some(4)).await >= 1);
        let _ = late.wait();
        assert!(!is_alive(late.id()));
    }
}
