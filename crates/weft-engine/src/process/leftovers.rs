//! What a dead run left running on this machine, found by the marker every task process
//! carries in its environment (children inherit it), and ended before anything of the plan
//! runs again.
//!
//! The reaper normally kills a dead run's tasks within milliseconds; this is the second line:
//! a reaper that was itself killed, or a takeover faster than the reaper. It finds even a
//! process started just before the crash, whose pid was never stored — no stale pid is ever
//! trusted. Processes on another machine cannot be reached: a dead node's tasks there are
//! presumed dead with their machine (the README says what a user can rely on).

use std::time::Duration;
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
    let found = tokio::task::spawn_blocking(move || {
        let found = kill_marked(&prefix);
        wait_gone(&found);
        found
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

/// Kills the process group of every process of this machine whose environment carries a
/// marker starting with `prefix`; returns their pids. Never this process's own group.
fn kill_marked(prefix: &str) -> Vec<u32> {
    let wanted = format!("{MARKER}={prefix}");
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
        if !environ
            .split(|&b| b == 0)
            .any(|var| var.starts_with(wanted.as_bytes()))
        {
            continue;
        }
        // SAFETY: getpgid only reads the process table.
        let pgid = unsafe { libc::getpgid(pid as libc::pid_t) };
        if pgid > 1 && pgid != own {
            super::kill_group(pgid as u32);
        } else {
            // Not in a group of its own (or in ours): the process alone.
            // SAFETY: kill(2) touches no memory.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        found.push(pid);
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
    }
}
