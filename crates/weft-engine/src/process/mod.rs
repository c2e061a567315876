//! Processes: how weft starts a command, watches it, signals it, and makes sure nothing of it
//! outlives the step it ran for. The executor and the group runner both start commands here;
//! every `unsafe` block of the engine lives in this module.
//!
//! - A command runs in its own process group with an argument list (never a shell string). It
//!   gets weft's environment minus weft's own variables (`WEFT_DB`, `WEFT_TOKEN`, any
//!   `WEFT_*`: a database password must not reach every task), then the flow's `env`, its
//!   required values as `WEFT_IN_<NAME>` and as one JSON object on stdin, `WEFT_PLAN_ID`,
//!   `WEFT_STEP`, `WEFT_ATTEMPT`, and the marker `WEFT_PROCESS`.
//! - Its output is the last line of stdout that is a JSON object. Output is read as bytes and
//!   decoded lossily; the pipes are drained to the end, whatever a task prints, and memory stays
//!   bounded: a line longer than [`MAX_OUTPUT_LINE`] is no output candidate.
//! - When its main process exits, what it left in its group gets a short grace to finish
//!   writing ([`LINGER`]), then the group is killed: nothing of a step outlives it.
//! - When the process running the steps dies by any signal, the reaper (`reaper.rs`) kills every task's
//!   group; and whoever takes the plan over first kills what is left of it on this machine,
//!   found by its marker (`leftovers.rs`).

pub mod identity;
mod leftovers;
mod reaper;

pub use leftovers::is_alive;
pub(crate) use leftovers::{end_leftovers, marker, MARKER};

use crate::director::Completion;
use crate::logs::StreamLog;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use weft_model::failure::STDERR_TAIL_BYTES;
use weft_model::flow::Command;
use weft_model::{duration, Failure, PlanId};

/// The longest stdout line that can be a step's output (1 MiB). Longer lines are read and
/// dropped; memory stays bounded whatever a task prints.
pub const MAX_OUTPUT_LINE: usize = 1 << 20;
/// How long the pipes of a command whose main process has exited may stay open (held by
/// what it left running in the background) before its process group is killed.
pub const LINGER: Duration = Duration::from_millis(500);

/// The process groups of the commands running now, by the step they run for, so that a
/// halted step's command — or every command, when the process is told to stop — can be killed.
/// A group step's runner also watches it, so that a halt stops the group for good instead of
/// looking like a task failure.
#[derive(Clone)]
pub struct ProcessGroups {
    inner: Arc<Mutex<Groups>>,
    /// Bumped on every kill, to wake group runners.
    kills: Arc<watch::Sender<u64>>,
}

#[derive(Default)]
struct Groups {
    pids: HashMap<u32, (PlanId, u32)>,
    /// Steps halted since they started.
    halted: HashSet<(PlanId, u32)>,
    /// Every command was killed: the process is stopping.
    closed: bool,
}

impl Default for ProcessGroups {
    fn default() -> Self {
        ProcessGroups {
            inner: Arc::default(),
            kills: Arc::new(watch::channel(0).0),
        }
    }
}

impl ProcessGroups {
    fn groups(&self) -> MutexGuard<'_, Groups> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, pid: u32, plan: PlanId, step: u32) {
        self.groups().pids.insert(pid, (plan, step));
    }

    fn remove(&self, pid: u32) {
        self.groups().pids.remove(&pid);
    }

    /// Halts a step's commands: SIGTERM to their process groups now; whoever supervises each
    /// sends SIGKILL once its `kill_timeout` has passed.
    pub fn kill_step(&self, plan: PlanId, step: u32) {
        let pids: Vec<u32> = {
            let mut g = self.groups();
            g.halted.insert((plan, step));
            g.pids
                .iter()
                .filter(|(_, owner)| **owner == (plan, step))
                .map(|(pid, _)| *pid)
                .collect()
        };
        for pid in pids {
            signal_group(pid, libc::SIGTERM);
        }
        self.kills.send_modify(|n| *n += 1);
    }

    /// Resolves once `step` of `plan` is halted (or every command killed).
    pub(crate) async fn halted(&self, plan: PlanId, step: u32) {
        let mut kills = self.kills();
        loop {
            if self.is_halted(plan, step) {
                return;
            }
            if kills.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// SIGKILLs every running command's process group; returns how many there were.
    pub fn kill_all(&self) -> usize {
        let pids: Vec<u32> = {
            let mut g = self.groups();
            g.closed = true;
            g.pids.drain().map(|(pid, _)| pid).collect()
        };
        for &pid in &pids {
            kill_group(pid);
        }
        self.kills.send_modify(|n| *n += 1);
        pids.len()
    }

    /// A step starts running: forget an earlier halt of it.
    pub(crate) fn started(&self, plan: PlanId, step: u32) {
        self.groups().halted.remove(&(plan, step));
    }

    /// Whether the step was halted, or every command killed, since it started.
    pub(crate) fn is_halted(&self, plan: PlanId, step: u32) -> bool {
        let g = self.groups();
        g.closed || g.halted.contains(&(plan, step))
    }

    /// Changes on every kill.
    pub(crate) fn kills(&self) -> watch::Receiver<u64> {
        self.kills.subscribe()
    }
}

/// A value as a `WEFT_IN_` variable holds it: strings as they are, the rest as JSON.
pub(crate) fn input_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

use weft_model::flow::input_var;

/// A value longer than this reaches a task in a file named by `WEFT_IN_<NAME>_FILE` instead of
/// in `WEFT_IN_<NAME>` (Linux refuses one variable over 128 KiB, and all of them together over
/// a few MiB); so does a value holding a NUL byte, which no variable can hold.
pub const MAX_INPUT_VAR: usize = 32 * 1024;
/// The values in variables together stay under this; the rest go to files.
const MAX_INPUT_VARS: usize = 512 * 1024;

/// A task's inputs as its environment: each value as `WEFT_IN_<NAME>`, or — when it is large
/// or holds a NUL byte — in a file of a private directory (mode 0700) named by
/// `WEFT_IN_<NAME>_FILE`. The directory is removed when this is dropped.
pub(crate) struct InputEnv {
    vars: Vec<(String, String)>,
    dir: Option<std::path::PathBuf>,
}

impl InputEnv {
    pub(crate) fn new(inputs: &Map<String, Value>) -> std::io::Result<InputEnv> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut env = InputEnv {
            vars: Vec::with_capacity(inputs.len()),
            dir: None,
        };
        let mut total = 0;
        for (name, value) in inputs {
            let text = input_text(value);
            let var = input_var(name);
            if text.len() <= MAX_INPUT_VAR
                && total + text.len() <= MAX_INPUT_VARS
                && !text.contains('\0')
            {
                total += text.len();
                env.vars.push((var, text));
                continue;
            }
            let dir = match &env.dir {
                Some(dir) => dir.clone(),
                None => {
                    use std::os::unix::fs::DirBuilderExt;
                    let dir = std::env::temp_dir().join(format!(
                        "weft-inputs-{}-{}",
                        std::process::id(),
                        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    ));
                    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
                    env.dir = Some(dir.clone());
                    dir
                }
            };
            let path = dir.join(&var);
            std::fs::write(&path, text.as_bytes())?;
            env.vars
                .push((format!("{var}_FILE"), path.display().to_string()));
        }
        Ok(env)
    }

    pub(crate) fn apply(&self, command: &mut tokio::process::Command) {
        command.envs(self.vars.iter().map(|(k, v)| (k, v)));
    }
}

impl Drop for InputEnv {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A command with weft's environment minus weft's own variables, then the flow's `env` and
/// working directory: what every process weft starts for a task (a command, a probe) begins
/// with.
pub(crate) fn base_command(argv: &[String], cmd: &Command) -> tokio::process::Command {
    // weft's own variables, found once: weft does not change its environment as it runs.
    static OWN: std::sync::OnceLock<Vec<std::ffi::OsString>> = std::sync::OnceLock::new();
    let own = OWN.get_or_init(|| {
        std::env::vars_os()
            .map(|(k, _)| k)
            .filter(|k| k.as_encoded_bytes().starts_with(b"WEFT_"))
            .collect()
    });
    let mut command = tokio::process::Command::new(&argv[0]);
    command.args(&argv[1..]);
    for k in own {
        command.env_remove(k);
    }
    command.envs(&cmd.env);
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    command
}

/// One run of a command: what to run, for which step, with what.
pub(crate) struct Invocation<'a> {
    /// Program and arguments.
    pub argv: &'a [String],
    /// Its environment and working directory.
    pub cmd: &'a Command,
    /// The plan.
    pub plan: PlanId,
    /// The step it runs for (its processes are killed with the step's).
    pub step: u32,
    /// `WEFT_STEP`.
    pub step_name: &'a str,
    /// The task of a group step it runs, if it does ("" for a step's own command).
    pub group_task: &'a str,
    /// `WEFT_ATTEMPT`.
    pub attempt: u32,
    /// Its required values.
    pub inputs: &'a Map<String, Value>,
    /// More variables.
    pub extra_env: &'a [(String, String)],
    /// Exit codes that mean success with a warning.
    pub warn_codes: &'a [i32],
    /// How long it may run.
    pub timeout: Option<Duration>,
    /// When a timeout or a halt stops it: SIGTERM, then SIGKILL after this.
    pub kill_timeout: Duration,
    /// Where what it prints is kept, if anywhere.
    pub logs: Option<&'a crate::logs::LogSink>,
    /// `execute` or `revert`, for its logs.
    pub action: &'a str,
}

/// Runs a command to its end; `spawned` is told its pid (its process group's id) once it runs.
pub(crate) async fn run_command(
    inv: Invocation<'_>,
    groups: &ProcessGroups,
    spawned: impl FnOnce(u32),
) -> Result<Completion, Failure> {
    let program = &inv.argv[0];
    let mut command = base_command(inv.argv, inv.cmd);
    command
        .env("WEFT_PLAN_ID", inv.plan.to_string())
        .env("WEFT_STEP", inv.step_name)
        .env("WEFT_ATTEMPT", inv.attempt.to_string())
        // W3C trace context: the command's own spans join the step's.
        .env(
            "TRACEPARENT",
            crate::traces::traceparent(inv.plan, inv.step, inv.attempt, inv.action),
        )
        .env(MARKER, marker(inv.plan, inv.step, inv.group_task))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let inputs = InputEnv::new(inv.inputs).map_err(|e| {
        Failure::new(
            "spawn",
            format!("cannot write the inputs of `{program}` to files: {e}"),
        )
        .with_kind("command")
    })?;
    inputs.apply(&mut command);
    for (k, v) in inv.extra_env {
        command.env(k, v);
    }
    // The reaper must run before the child does; the child is announced right after the
    // spawn. (Announcing from the child itself would need a `pre_exec` hook, which makes the
    // standard library fork the whole process instead of using posix_spawn: a millisecond per
    // step. A crash in the microseconds between the spawn and the announcement leaves the task
    // to the second line: whoever takes the plan over kills it by its marker before anything of
    // the plan runs again.)
    reaper::ensure();
    let child = command.spawn().map_err(|e| {
        Failure::new("spawn", format!("cannot start `{program}`: {e}")).with_kind("command")
    })?;
    let pid = child.id();
    if let Some(pid) = pid {
        reaper::guard(pid);
        groups.insert(pid, inv.plan, inv.step);
        spawned(pid);
    }
    let stdin_json = Value::Object(inv.inputs.clone()).to_string();
    let stop = async {
        tokio::select! {
            limit = time_out(inv.timeout) => Stop::Timeout(limit),
            () = groups.halted(inv.plan, inv.step) => Stop::Halted,
        }
    };
    let log = |stream| {
        inv.logs.map(|sink| {
            sink.stream(
                inv.plan,
                inv.step,
                inv.attempt,
                inv.group_task,
                inv.action,
                stream,
            )
        })
    };
    let supervised = Supervised {
        program,
        warn_codes: inv.warn_codes,
        kill_timeout: inv.kill_timeout,
        stdin_json,
        pid,
        logs: (log("stdout"), log("stderr")),
    };
    let result = supervise(child, supervised, stop).await;
    if let Some(pid) = pid {
        groups.remove(pid);
        // Whatever the task left running dies with it; only then may the reaper forget the
        // group (its number is free for reuse once it is empty).
        kill_group(pid);
        reaper::forget(pid);
    }
    result
}

/// What a task printed on stdout, as far as its output goes.
#[derive(Default)]
struct Printed {
    /// The last line that is a JSON object.
    last: Option<Map<String, Value>>,
    /// The length of a line that looked like a JSON object but was over [`MAX_OUTPUT_LINE`],
    /// if one came after `last`.
    too_long: Option<usize>,
}

/// Reads a task's stdout to its end, as bytes (decoded lossily, line by line), holding at
/// most [`MAX_OUTPUT_LINE`] of a line in memory.
async fn read_output(out: impl AsyncRead + Unpin, log: Option<StreamLog>) -> Printed {
    // Every read from the pipe is kept as it comes (a chunk of up to the buffer's size).
    let mut reader = BufReader::new(Tee { inner: out, log });
    let mut printed = Printed::default();
    let mut line: Vec<u8> = Vec::new();
    // The line being read is longer than any output may be: its length, while skipping to
    // its end, and whether it looked like an object.
    let mut overlong: Option<(usize, bool)> = None;
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let (chunk, ends_line) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        match &mut overlong {
            Some((len, _)) => *len += chunk.len(),
            None if line.len() + chunk.len() > MAX_OUTPUT_LINE => {
                let object =
                    line.iter().chain(chunk).find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
                overlong = Some((line.len() + chunk.len(), object));
                line = Vec::new();
            }
            None => line.extend_from_slice(chunk),
        }
        let used = chunk.len() + usize::from(ends_line);
        reader.consume(used);
        if ends_line {
            end_line(&mut printed, &mut line, overlong.take());
        }
    }
    end_line(&mut printed, &mut line, overlong);
    if let Some(log) = reader.into_inner().log {
        log.finish().await;
    }
    printed
}

/// A reader that hands what it reads to a stream's log too.
struct Tee<R> {
    inner: R,
    log: Option<StreamLog>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Tee<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &polled {
            if let Some(log) = &mut self.log {
                log.write(&buf.filled()[before..]);
            }
        }
        polled
    }
}

fn end_line(printed: &mut Printed, line: &mut Vec<u8>, overlong: Option<(usize, bool)>) {
    match overlong {
        Some((len, true)) => printed.too_long = Some(len),
        Some((_, false)) => {}
        None => {
            if let Some(obj) = json_object(line) {
                printed.last = Some(obj);
                printed.too_long = None;
            }
        }
    }
    line.clear();
}

fn json_object(line: &[u8]) -> Option<Map<String, Value>> {
    // Most lines are not objects: tell by their first byte, before any text is made of them.
    // A non-ASCII one may be Unicode whitespace before a `{`, as `trim` sees it.
    match line.iter().find(|b| !matches!(b, b'\t'..=b'\r' | b' ')) {
        None => return None,
        Some(b) if b.is_ascii() && *b != b'{' => return None,
        Some(_) => {}
    }
    let text = String::from_utf8_lossy(line);
    let trimmed = text.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    match serde_json::from_str(trimmed) {
        Ok(Value::Object(obj)) => Some(obj),
        _ => None,
    }
}

/// Reads a task's stderr to its end; keeps its last [`STDERR_TAIL_BYTES`].
async fn stderr_tail(mut err: impl AsyncRead + Unpin, mut log: Option<StreamLog>) -> Vec<u8> {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = err.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Some(log) = &mut log {
            log.write(&buf[..n]);
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * STDERR_TAIL_BYTES {
            tail.drain(..tail.len() - STDERR_TAIL_BYTES);
        }
    }
    if let Some(log) = log {
        log.finish().await;
    }
    tail
}

/// Feeds a spawned command its stdin, collects its output and stderr tail, enforces its
/// timeout, and turns how it ended into the step's result.
/// Resolves with `limit` once it has passed; never without one.
pub(crate) async fn time_out(limit: Option<Duration>) -> Duration {
    match limit {
        Some(limit) => {
            tokio::time::sleep(limit).await;
            limit
        }
        None => std::future::pending().await,
    }
}

/// Why a command is stopped before it ends by itself.
enum Stop {
    /// It ran past its timeout.
    Timeout(Duration),
    /// Its step was halted (or the process is stopping).
    Halted,
}

/// What [`supervise`] needs to know of a command.
struct Supervised<'a> {
    program: &'a str,
    warn_codes: &'a [i32],
    kill_timeout: Duration,
    stdin_json: String,
    pid: Option<u32>,
    /// Where stdout and stderr are kept.
    logs: (Option<StreamLog>, Option<StreamLog>),
}

async fn supervise(
    mut child: tokio::process::Child,
    cmd: Supervised<'_>,
    stop: impl std::future::Future<Output = Stop>,
) -> Result<Completion, Failure> {
    let Supervised {
        program,
        warn_codes,
        kill_timeout,
        stdin_json,
        pid,
        logs: (out_log, err_log),
    } = cmd;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut readers = tokio::spawn(async move {
        let out = async {
            match stdout {
                Some(o) => read_output(o, out_log).await,
                None => Printed::default(),
            }
        };
        let err = async {
            match stderr {
                Some(e) => stderr_tail(e, err_log).await,
                None => Vec::new(),
            }
        };
        tokio::join!(out, err)
    });

    let feed = async move {
        if let Some(mut s) = stdin {
            // A program that does not read stdin closes it early; that is fine.
            let _ = s.write_all(stdin_json.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    };
    let exited = async { tokio::join!(feed, child.wait()).1 };
    tokio::pin!(exited);
    let status = tokio::select! {
        status = &mut exited => status,
        why = stop => {
            // SIGTERM, a grace to clean up, then SIGKILL.
            if let Some(pid) = pid {
                signal_group(pid, libc::SIGTERM);
            }
            let how = match tokio::time::timeout(kill_timeout, &mut exited).await {
                Ok(_) => "stopped with SIGTERM".to_string(),
                Err(_) => {
                    if let Some(pid) = pid {
                        kill_group(pid);
                    }
                    let _ = (&mut exited).await;
                    format!(
                        "killed: it was still running {} after SIGTERM",
                        duration::format(kill_timeout)
                    )
                }
            };
            readers.abort();
            let failure = match why {
                Stop::Timeout(limit) => Failure::new(
                    "timeout",
                    format!(
                        "timed out after {}; its process group was {how}",
                        duration::format(limit)
                    ),
                ),
                Stop::Halted => Failure::new(
                    "halted",
                    format!("halted; its process group was {how}"),
                ),
            };
            return Err(failure.with_kind("command"));
        }
    };
    // The main process has exited. What it left in the background may still hold its pipes:
    // a short grace to finish writing, then the group is killed and the pipes close — unless
    // a process that left the group holds them, which is not waited for.
    let (output, stderr_tail) = match tokio::time::timeout(LINGER, &mut readers).await {
        Ok(done) => done.unwrap_or_default(),
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            match tokio::time::timeout(LINGER, &mut readers).await {
                Ok(done) => done.unwrap_or_default(),
                Err(_) => {
                    readers.abort();
                    (Printed::default(), Vec::new())
                }
            }
        }
    };
    let status =
        status.map_err(|e| Failure::new("wait", format!("cannot wait for `{program}`: {e}")))?;
    if let (true, Some(len)) = (status.success(), output.too_long) {
        return Err(Failure::new(
            "output_too_large",
            format!(
                "`{program}` printed a JSON line of {len} bytes; a step's output is at most {MAX_OUTPUT_LINE} bytes (1 MiB)"
            ),
        )
        .with_kind("command"));
    }
    let output = Value::Object(output.last.unwrap_or_default());
    if status.success() {
        return Ok(Completion::Done {
            output,
            warning: None,
        });
    }
    if let Some(code) = status.code().filter(|c| warn_codes.contains(c)) {
        let warning = format!("`{program}` exited with code {code}, a warning");
        return Ok(Completion::Done {
            output,
            warning: Some(warning),
        });
    }
    use std::os::unix::process::ExitStatusExt;
    let failure = match (status.code(), status.signal()) {
        (Some(code), _) => {
            let mut f = Failure::new(
                "command_failed",
                format!("`{program}` exited with code {code}"),
            )
            .with_kind("command");
            f.exit_code = Some(code);
            f
        }
        (None, Some(sig)) => {
            let mut f = Failure::new("killed", format!("`{program}` was killed by signal {sig}"))
                .with_kind("command");
            f.signal = Some(sig);
            f
        }
        (None, None) => {
            Failure::new("command_failed", format!("`{program}` failed")).with_kind("command")
        }
    };
    Err(failure.with_stderr(&stderr_tail))
}

/// SIGKILLs the process group led by `pid`.
pub fn kill_group(pid: u32) {
    signal_group(pid, libc::SIGKILL);
}

/// Sends `signal` to the process group led by `pid`.
pub(crate) fn signal_group(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
    unsafe {
        libc::kill(-(pid as libc::pid_t), signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_an_object_as_trimmed_text_says() {
        let object = |line: &[u8]| json_object(line).is_some();
        assert!(object(b"{\"a\": 1}"));
        assert!(object(b" \t\x0b\x0c\r{\"a\": 1}  "));
        assert!(object("\u{a0}\u{2003}{\"a\": 1}".as_bytes()));
        assert!(!object(b""));
        assert!(!object(b"   "));
        assert!(!object(b"10000"));
        assert!(!object(b"[1, 2]"));
        assert!(!object(b"{not json"));
        assert!(!object(b"\xff{\"a\": 1}"));
    }

    async fn printed(bytes: &[u8]) -> Printed {
        read_output(bytes, None).await
    }

    /// Regression (issue 12): a non-UTF-8 byte ended the reading of a task's output.
    #[tokio::test]
    async fn a_line_that_is_not_utf8_does_not_stop_the_reading() {
        let p = printed(b"caf\xe9.txt\n{\"count\": 1}\n").await;
        assert_eq!(p.last.expect("an object")["count"], 1);
    }

    #[tokio::test]
    async fn the_last_object_wins_and_a_last_line_needs_no_newline() {
        let p = printed(b"{\"a\": 1}\nnoise\n  {\"a\": 2}").await;
        assert_eq!(p.last.expect("an object")["a"], 2);
    }

    #[tokio::test]
    async fn an_object_over_the_limit_is_no_output_but_is_reported() {
        let mut big = b"{\"v\": \"".to_vec();
        big.resize(MAX_OUTPUT_LINE + 10, b'x');
        big.extend_from_slice(b"\"}\n");
        let mut bytes = b"{\"a\": 1}\n".to_vec();
        bytes.extend_from_slice(&big);
        let p = printed(&bytes).await;
        assert_eq!(p.too_long, Some(big.len() - 1));
        // A later object is the output again.
        bytes.extend_from_slice(b"{\"a\": 3}\n");
        let p = printed(&bytes).await;
        assert_eq!(
            (p.last.expect("an object")["a"].clone(), p.too_long),
            (3.into(), None)
        );
        // A long line that is no object is just noise.
        let mut noise = vec![b'x'; MAX_OUTPUT_LINE + 1];
        noise.push(b'\n');
        assert_eq!(printed(&noise).await.too_long, None);
    }

    #[test]
    fn large_or_nul_values_go_to_files_the_rest_to_variables() {
        let mut inputs = Map::new();
        inputs.insert("small".into(), Value::String("s".into()));
        inputs.insert("big".into(), Value::String("b".repeat(MAX_INPUT_VAR + 1)));
        inputs.insert("nul".into(), Value::String("a\0b".into()));
        let env = InputEnv::new(&inputs).expect("inputs");
        let vars: HashMap<&str, &str> = env
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(vars["WEFT_IN_SMALL"], "s");
        assert!(!vars.contains_key("WEFT_IN_BIG"));
        let big = std::fs::read_to_string(vars["WEFT_IN_BIG_FILE"]).expect("file");
        assert_eq!(big.len(), MAX_INPUT_VAR + 1);
        let nul = std::fs::read(vars["WEFT_IN_NUL_FILE"]).expect("file");
        assert_eq!(nul, b"a\0b");
        let dir = env.dir.clone().expect("a directory");
        drop(env);
        assert!(!dir.exists(), "removed with the run");
    }
}
