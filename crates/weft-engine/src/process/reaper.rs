//! The reaper: a companion process that kills every task's process group when the process
//! that runs the tasks dies — by any signal, `SIGKILL` included.
//!
//! Why a companion process: a dying process runs no code, so something else must notice. The
//! alternatives fall short. `PR_SET_PDEATHSIG` fires when the *thread* that forked the child
//! exits (a tokio blocking-pool thread exits after ten idle seconds), not the process, and it
//! reaches only the group's leader, not the children a shell task starts. A cgroup per step
//! needs a delegated cgroup tree, which containers and CI machines rarely give. The reaper
//! needs nothing but `fork`.
//!
//! How: once per process, on the first command spawned, the process forks a reaper that holds
//! one end of a `SOCK_SEQPACKET` socket pair; the process keeps the other end (close-on-exec,
//! at a fixed descriptor number for its whole life). The process announces every task's
//! process group as soon as it is spawned, and says when a group is gone. When the
//! socket reaches end-of-file — the process died, whatever killed it — the reaper SIGKILLs every
//! group still announced and exits. It sits in its own process group and ignores the signals a
//! terminal or a supervisor sends to a whole group, so it outlives the process it watches.
//!
//! Everything the forked reaper does is async-signal-safe: raw system calls on memory allocated
//! before the fork.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard};

/// The most process groups the reaper keeps at once (a table allocated before the fork).
const CAPACITY: usize = 1 << 16;
/// A group is announced.
const ADD: u8 = b'+';
/// A group is gone.
const FORGET: u8 = b'-';

/// The parent's side of the reaper.
struct Reaper {
    /// The parent's end of the socket pair.
    fd: OwnedFd,
    /// The reaper's pid.
    pid: libc::pid_t,
    /// The groups announced and not yet gone, to announce again to a new reaper.
    live: HashSet<i32>,
}

static REAPER: Mutex<Option<Reaper>> = Mutex::new(None);

fn reaper() -> MutexGuard<'static, Option<Reaper>> {
    REAPER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the reaper if none runs (once per process; a failure is logged, and tasks then run
/// unguarded).
pub(crate) fn ensure() {
    let mut guard = reaper();
    if guard.is_none() {
        match start() {
            Ok(r) => *guard = Some(r),
            Err(e) => {
                tracing::warn!("cannot start the reaper that kills tasks when weft dies: {e}")
            }
        }
    }
}

/// Once a child runs: the reaper guards its group (and a restarted reaper is told it again).
pub(crate) fn guard(pgid: u32) {
    let pgid = pgid as i32;
    let mut guard = reaper();
    if let Some(r) = guard.as_mut() {
        r.live.insert(pgid);
    }
    send(&mut guard, record(ADD, pgid));
}

/// In the parent, once a group has been killed or has ended: the reaper forgets it, so that
/// its number, once reused by another process, is never killed.
pub(crate) fn forget(pgid: u32) {
    let pgid = pgid as i32;
    let mut guard = reaper();
    if let Some(r) = guard.as_mut() {
        r.live.remove(&pgid);
    }
    send(&mut guard, record(FORGET, pgid));
}

fn record(op: u8, pgid: i32) -> [u8; 5] {
    let b = pgid.to_le_bytes();
    [op, b[0], b[1], b[2], b[3]]
}

/// Sends one record; if the reaper has died (someone killed it), starts another in its place
/// and tells it every live group.
fn send(guard: &mut MutexGuard<'static, Option<Reaper>>, record: [u8; 5]) {
    let Some(r) = guard.as_mut() else { return };
    if send_record(r.fd.as_raw_fd(), &record) {
        return;
    }
    tracing::warn!("the reaper (pid {}) is gone; starting another", r.pid);
    // SAFETY: reaps the dead reaper if it has exited; WNOHANG never blocks.
    unsafe {
        libc::waitpid(r.pid, std::ptr::null_mut(), libc::WNOHANG);
    }
    let live = std::mem::take(&mut r.live);
    match start() {
        Ok(mut new) => {
            for &pgid in &live {
                send_record(new.fd.as_raw_fd(), &self::record(ADD, pgid));
            }
            new.live = live;
            **guard = Some(new);
        }
        Err(e) => {
            tracing::warn!("cannot restart the reaper: {e}");
            r.live = live;
        }
    }
}

fn send_record(fd: RawFd, record: &[u8; 5]) -> bool {
    // SAFETY: send reads `record`, a live local array.
    let n = unsafe { libc::send(fd, record.as_ptr().cast(), record.len(), libc::MSG_NOSIGNAL) };
    n == record.len() as isize
}

/// Forks a reaper.
fn start() -> std::io::Result<Reaper> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two descriptors into `fds`.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let [ours, theirs] = fds;
    // The table the reaper fills, allocated here: the forked child may not allocate.
    let mut table: Vec<i32> = vec![0; CAPACITY];
    let table_ptr = table.as_mut_ptr();
    // SAFETY: fork; the child runs only async-signal-safe calls on memory that exists in it
    // (the table and the descriptors) and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: both descriptors are ours and open.
        unsafe {
            libc::close(ours);
            libc::close(theirs);
        }
        return Err(e);
    }
    if pid == 0 {
        // SAFETY: in the forked child; see `watch`.
        unsafe { watch(theirs, table_ptr, CAPACITY) }
    }
    drop(table);
    // SAFETY: `theirs` belongs to the reaper now; `ours` is open and owned by nothing else.
    let fd = unsafe {
        libc::close(theirs);
        OwnedFd::from_raw_fd(ours)
    };
    Ok(Reaper {
        fd,
        pid,
        live: HashSet::new(),
    })
}

/// The reaper's life, in the forked child: reads records until the socket's end-of-file, then
/// kills every group still announced.
///
/// # Safety
/// Only in a freshly forked child. `table` must point to `capacity` writable `i32`s.
unsafe fn watch(fd: RawFd, table: *mut i32, capacity: usize) -> ! {
    unsafe {
        // Its own process group: a terminal's Ctrl-C or a `kill -- -PGID` aimed at weft's group
        // does not reach it. It ignores the signals that ask a process to stop, and dies with
        // SIGKILL like anything else.
        libc::setpgid(0, 0);
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGPIPE,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        libc::sigprocmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
        // Hold nothing of the parent's but the socket: no database file, no pipe a reader waits
        // on, and not the parent's end of the socket itself (or end-of-file would never come).
        let fd = if fd != 0 {
            libc::dup2(fd, 0);
            0
        } else {
            fd
        };
        if libc::syscall(libc::SYS_close_range, 1u32, u32::MAX, 0u32) != 0 {
            for other in 1..65_536 {
                libc::close(other);
            }
        }
        let name = b"weft-reaper\0";
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());

        let mut len = 0usize;
        let mut buf = [0u8; 8];
        loop {
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n == 0 {
                break;
            }
            if n < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break;
            }
            if n != 5 {
                continue;
            }
            let pgid = i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
            if pgid <= 1 {
                continue;
            }
            let slots = std::slice::from_raw_parts_mut(table, capacity);
            let at = slots[..len].iter().position(|&p| p == pgid);
            match (buf[0], at) {
                (ADD, None) if len < capacity => {
                    slots[len] = pgid;
                    len += 1;
                }
                (FORGET, Some(i)) => {
                    slots[i] = slots[len - 1];
                    len -= 1;
                }
                _ => {}
            }
        }
        let slots = std::slice::from_raw_parts(table, capacity);
        for &pgid in &slots[..len] {
            libc::kill(-pgid, libc::SIGKILL);
        }
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_the_operation_and_the_group() {
        let r = record(FORGET, 123_456);
        assert_eq!(r[0], FORGET);
        assert_eq!(i32::from_le_bytes([r[1], r[2], r[3], r[4]]), 123_456);
    }
}
