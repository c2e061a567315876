//! Wake-up hints between the processes that share one SQLite file — SQLite's stand-in for
//! PostgreSQL's `LISTEN/NOTIFY`.
//!
//! Beside `weft.db` lies a directory `weft.db-wake/` (mode 0700) holding one Unix datagram
//! socket per listening process (a node asks for hints; one-shot commands do not listen). A
//! process whose commit made plans or jobs claimable or posted to the mailbox sends one byte to every
//! socket there; a socket nobody listens on any more is removed by the first sender to find it
//! dead. Hints are only hints: a lost one costs a poll interval, never correctness.

use crate::Hints;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::watch;

/// Plans became claimable.
const PLANS: u8 = b'p';
/// A message was posted to the mailbox.
const MAILBOX: u8 = b'm';
/// A message was answered.
const REPLIES: u8 = b'r';
/// Jobs became claimable.
const JOBS: u8 = b'j';
/// Jobs left the board.
const REMOVALS: u8 = b'x';
/// Messages were sent to remote workers or executors.
const MESSAGES: u8 = b'w';

/// What a commit wants the listeners to know.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Want {
    pub plans: bool,
    pub mailbox: bool,
    pub replies: bool,
    pub jobs: bool,
    pub removals: bool,
    pub messages: bool,
}

/// The wake-up directory of one database file.
#[derive(Debug, Clone)]
pub(super) struct Wakes {
    dir: PathBuf,
}

impl Wakes {
    /// The directory beside the database at `db`.
    pub(super) fn beside(db: &Path) -> Wakes {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push("-wake");
        Wakes {
            dir: db.with_file_name(name),
        }
    }

    /// Tells every listening process (this one's too) what `want` says.
    pub(super) fn send(&self, want: Want) {
        if !(want.plans
            || want.mailbox
            || want.replies
            || want.jobs
            || want.removals
            || want.messages)
        {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return; // Nobody has ever listened.
        };
        let Ok(sock) = UnixDatagram::unbound() else {
            return;
        };
        // A full receiver already has hints waiting: never block the writer for it.
        let _ = sock.set_nonblocking(true);
        for entry in entries.flatten() {
            let path = entry.path();
            for (wanted, byte) in [
                (want.plans, PLANS),
                (want.mailbox, MAILBOX),
                (want.replies, REPLIES),
                (want.jobs, JOBS),
                (want.removals, REMOVALS),
                (want.messages, MESSAGES),
            ] {
                if !wanted {
                    continue;
                }
                if let Err(e) = sock.send_to(&[byte], &path) {
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                    ) {
                        // Its process is gone.
                        let _ = std::fs::remove_file(&path);
                        break;
                    }
                }
            }
        }
    }

    /// Starts listening (on the current tokio runtime) until every receiver is dropped.
    pub(super) fn listen(&self) -> std::io::Result<watch::Receiver<Hints>> {
        use std::os::unix::fs::DirBuilderExt;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let path = self.dir.join(format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // A socket left by a dead process that had this pid.
        let _ = std::fs::remove_file(&path);
        let sock = tokio::net::UnixDatagram::bind(&path)?;
        let (tx, rx) = watch::channel(Hints::default());
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            loop {
                tokio::select! {
                    _ = tx.closed() => break,
                    got = sock.recv(&mut buf) => match got {
                        Ok(n) => tx.send_modify(|h| {
                            for &b in &buf[..n] {
                                match b {
                                    PLANS => h.plans += 1,
                                    MAILBOX => h.mailbox += 1,
                                    REPLIES => h.replies += 1,
                                    JOBS => h.jobs += 1,
                                    REMOVALS => h.removals += 1,
                                    MESSAGES => h.messages += 1,
                                    _ => {}
                                }
                            }
                        }),
                        Err(_) => break,
                    },
                }
            }
            let _ = std::fs::remove_file(&path);
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_commit_wakes_every_listener_and_forgets_dead_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wakes = Wakes::beside(&dir.path().join("weft.db"));
        // Nobody listens yet: sending does nothing and fails nothing.
        wakes.send(Want {
            plans: true,
            ..Want::default()
        });
        let mut a = wakes.listen().expect("listen");
        let mut b = wakes.listen().expect("listen");
        // A socket whose process is gone.
        let dead = dir.path().join("weft.db-wake").join("999999999-0");
        drop(UnixDatagram::bind(&dead).expect("bind"));
        wakes.send(Want {
            plans: true,
            mailbox: true,
            ..Want::default()
        });
        for rx in [&mut a, &mut b] {
            tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while rx.borrow().plans == 0 || rx.borrow().mailbox == 0 {
                    rx.changed().await.expect("listening");
                }
            })
            .await
            .expect("woken");
        }
        assert!(!dead.exists(), "a dead listener's socket is removed");
    }
}
