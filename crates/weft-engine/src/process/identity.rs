//! Who a process is, in a form that outlives it: `weft@HOST:PID:START`, where START is the
//! process's start time in clock ticks since boot, so that a reused pid is never mistaken for
//! the process that held it. Lock owners of `weft run` and the processes of nodes are named so;
//! whoever finds such a name can tell, on the same machine, whether its process is gone.

/// This process's name.
pub fn this_process() -> String {
    let pid = std::process::id();
    format!("weft@{}:{pid}:{}", hostname(), start_time(pid).unwrap_or(0))
}

/// Whether `name` names a process on this machine that is gone. Processes on other machines,
/// or names in a form this build does not know, are presumed alive.
pub fn is_gone(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("weft@") else {
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

/// This machine's name.
pub fn hostname() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    })
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
        assert!(!is_gone(&this_process()));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        let name = format!("weft@{}:{pid}:{}", hostname(), start_time(pid).unwrap_or(1));
        child.wait().expect("wait");
        assert!(is_gone(&name));
        assert!(
            !is_gone("weft@another-host:1:1"),
            "other machines are presumed alive"
        );
        // A live pid with another start time is a reused pid: gone.
        let reused = format!("weft@{}:{}:1", hostname(), std::process::id());
        assert!(is_gone(&reused));
    }
}
