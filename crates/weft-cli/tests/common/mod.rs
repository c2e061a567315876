//! Helpers for tests that drive the real `weft` binary against a real SQLite file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory with a database and flow files in it.
pub(crate) struct Sandbox {
    pub dir: tempfile::TempDir,
    /// The store's URL when it is not the sandbox's SQLite file (a PostgreSQL database).
    pub url: Option<String>,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
            url: None,
        }
    }

    /// A sandbox whose store is the database at `url`.
    pub(crate) fn with_store(url: String) -> Self {
        Sandbox {
            url: Some(url),
            ..Sandbox::new()
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.path().join("weft.db")
    }

    /// Writes a file into the sandbox and returns its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// `weft ARGS` run in the sandbox with its database.
    pub(crate) fn weft(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
        c.current_dir(self.path())
            .env(
                "WEFT_DB",
                self.url
                    .clone()
                    .unwrap_or_else(|| self.db().display().to_string()),
            )
            .env_remove("WEFT_LOG");
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.weft().args(args).output().expect("run weft")
    }

    /// `weft plans show ID --json`, parsed.
    pub(crate) fn show(&self, id: &str) -> serde_json::Value {
        let out = self.run(&["plans", "show", id, "--json", "--history"]);
        assert!(
            out.status.success(),
            "plans show failed: {}",
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("plans show prints JSON")
    }

    /// The id of the newest plan.
    pub(crate) fn last_plan(&self) -> String {
        let out = self.run(&["plans", "list", "--json"]);
        assert!(
            out.status.success(),
            "plans list failed: {}",
            text(&out.stderr)
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        list[0]["id"].as_str().expect("a plan").to_string()
    }
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The step called `name` in a `plans show --json` value.
pub(crate) fn step<'a>(plan: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    plan["plan"]["flow"]["steps"]
        .as_array()
        .and_then(|steps| steps.iter().position(|s| s["name"] == name))
        .map(|i| &plan["steps"][i])
        .unwrap_or_else(|| panic!("no step {name}"))
}

/// A node process, killed (SIGKILL) when dropped unless stopped first; a failing test prints
/// its log.
pub(crate) struct NodeProcess(Child, std::path::PathBuf);

impl NodeProcess {
    pub(crate) fn start(sb: &Sandbox, name: &str, extra: &[&str]) -> NodeProcess {
        Self::start_under(sb, name, extra, &[])
    }

    /// A node started through `wrapper` (e.g. `faketime -f +30s`).
    pub(crate) fn start_under(
        sb: &Sandbox,
        name: &str,
        extra: &[&str],
        wrapper: &[&str],
    ) -> NodeProcess {
        let mut args = vec!["serve", "--name", name, "--grace", "2s"];
        if !extra.contains(&"--lease") {
            args.extend_from_slice(&["--lease", "2s"]);
        }
        args.extend_from_slice(extra);
        let log_path = sb.path().join(format!("serve-{name}-{}.log", next_id()));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = match wrapper.split_first() {
            None => sb.weft(),
            Some((program, rest)) => {
                let plain = sb.weft();
                let mut c = Command::new(program);
                c.args(rest).arg(plain.get_program());
                c.current_dir(sb.path());
                for (k, v) in plain.get_envs() {
                    match v {
                        Some(v) => c.env(k, v),
                        None => c.env_remove(k),
                    };
                }
                c
            }
        };
        // Its own process group: a kill reaches a wrapper and the node it runs alike.
        use std::os::unix::process::CommandExt;
        let child = command
            .env("WEFT_LOG", "info")
            .process_group(0)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn serve");
        NodeProcess(child, log_path)
    }

    /// `weft worker --topic TOPIC --lease 2s EXTRA…`, logging as a node does.
    pub(crate) fn worker(sb: &Sandbox, topic: &str, extra: &[&str]) -> NodeProcess {
        let mut command = sb.weft();
        command.args(["worker", "--topic", topic, "--lease", "2s"]);
        command.args(extra);
        Self::spawn_logged(sb, &format!("worker-{topic}"), command)
    }

    /// `command`, in its own process group, its stderr in a log file of the sandbox.
    pub(crate) fn spawn_logged(sb: &Sandbox, label: &str, mut command: Command) -> NodeProcess {
        use std::os::unix::process::CommandExt;
        let log_path = sb.path().join(format!("{label}-{}.log", next_id()));
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = command
            .env("WEFT_LOG", "info")
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn");
        NodeProcess(child, log_path)
    }

    /// The node's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }

    /// What the node has logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }

    /// SIGKILLs the node and whatever wraps it (its whole process group).
    pub(crate) fn sigkill(&mut self) {
        // SAFETY: kill(2) on the process group of a child we spawned as its leader.
        unsafe { libc::kill(-(self.0.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.0.wait();
    }

    pub(crate) fn sigterm(&mut self) -> Option<i32> {
        // SAFETY: kill(2) on a child process we spawned.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        self.0.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.sigkill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.1).unwrap_or_default();
            eprintln!("--- {} ---\n{log}", self.1.display());
        }
    }
}

/// A distinct suffix per node process started by this test binary.
pub(crate) fn next_id() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

pub(crate) fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` is alive (a zombie is not).
#[allow(unused_imports)]
pub(crate) use weft_engine::process::is_alive as alive;

/// The pids listed, one per line, in the sandbox file `name`.
pub(crate) fn pids_in(sb: &Sandbox, name: &str) -> Vec<u32> {
    std::fs::read_to_string(sb.path().join(name))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The children of `pid`.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The name a process gave itself (`/proc/PID/comm`).
pub(crate) fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A timestamp of weft's JSON (RFC 3339) as milliseconds since the epoch.
pub(crate) fn millis(v: &serde_json::Value) -> Option<i64> {
    weft_model::parse_time(v.as_str()?).ok()
}

/// An HTTP response: status, headers (names in lower case), body.
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&self.body)))
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (a connection each; the body sent as is).
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("request head");
    // The server may answer (413) before reading the whole body, and close.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {}", text(&raw)));
    let head = text(&raw[..split]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        body = unchunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(text(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(data.len());
        out.extend_from_slice(&data[start..end]);
        data = &data[(end + 2).min(data.len())..];
    }
    out
}

/// The port of the HTTP API a node logged (`HTTP API at http://ADDR/api`).
pub(crate) fn http_port(node: &NodeProcess) -> u16 {
    wait_for("the node's HTTP address", Duration::from_secs(20), || {
        let log = node.log();
        let rest = log.split("HTTP API at ").nth(1)?.split_once("://")?.1;
        let addr = rest.split('/').next()?;
        addr.rsplit(':').next()?.parse().ok()
    })
}

/// A flow of a command that greets `who` and a gate waiting for an event after it.
pub(crate) const APPROVAL: &str = r#"
name = "approval"
[inputs]
who = { default = "world" }
[[task]]
name = "greet"
run = ["sh", "-c", "echo hello $WEFT_IN_WHO; echo '{\"greeted\": true}'"]
requires = ["who"]
[[task]]
name = "approve"
after = ["greet"]
wait_for_event = { timeout = "1h" }
"#;
