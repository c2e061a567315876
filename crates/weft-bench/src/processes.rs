//! Scenarios that run the `weft` binary: command steps, submitting a 100,000-task flow, and
//! memory measured in a fresh child.

use crate::support::tempdir;
use crate::{Error, Figure};
use serde_json::Value;
use std::path::Path;
use std::time::Instant;

/// Runs a memory scenario once per sample, each in a fresh `weft bench --in-process` child, so
/// that what earlier scenarios allocated does not count.
pub(crate) async fn in_fresh_processes(
    exe: &Path,
    scenario: &'static str,
    repeat: u32,
) -> Result<Figure, Error> {
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let out = tokio::process::Command::new(exe)
            .args(["bench", scenario, "--repeat", "1", "--json", "--in-process"])
            .output()
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
        let rows: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            Error::Failed(format!(
                "the {scenario} child printed no figures ({e}); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        })?;
        samples.push(rows[0]["median"].as_f64().unwrap_or(f64::NAN));
    }
    Ok(Figure {
        name: "live-plans",
        unit: "MB RSS",
        samples,
        target: 200.0,
        higher_is_better: false,
    })
}

/// `weft submit` of a 100,000-task linear flow in a fresh process: seconds, or its peak RSS.
pub(crate) async fn flow_100k(exe: &Path, repeat: u32, rss: bool) -> Result<Figure, Error> {
    const TASKS: usize = 100_000;
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let dir = tempdir()?;
        let mut flow = String::from("name = \"wide\"\n");
        for i in 0..TASKS {
            flow.push_str(&format!("[[task]]\nname = \"t{i}\"\nrun = [\"true\"]\n"));
            if i > 0 {
                flow.push_str(&format!("after = [\"t{}\"]\n", i - 1));
            }
        }
        let file = dir.join("wide.toml");
        std::fs::write(&file, flow).map_err(|e| Error::Failed(e.to_string()))?;
        let t = Instant::now();
        let child = std::process::Command::new(exe)
            .arg("submit")
            .arg(&file)
            .arg("--db")
            .arg(dir.join("weft.db"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error::Failed(e.to_string()))?;
        let pid = child.id() as libc::pid_t;
        let (status, maxrss_kb) = tokio::task::spawn_blocking(move || {
            let mut status = 0;
            // SAFETY: an all-zero rusage is valid; wait4 fills it for the child we spawned.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: waits for our own child, writing into the two locals.
            let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            (if rc == pid { status } else { -1 }, usage.ru_maxrss)
        })
        .await
        .map_err(|e| Error::Failed(e.to_string()))?;
        let secs = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(dir);
        if status != 0 {
            return Err(Error::Failed(
                "weft submit of the 100k-task flow failed".into(),
            ));
        }
        samples.push(if rss { maxrss_kb as f64 / 1024.0 } else { secs });
    }
    Ok(if rss {
        Figure {
            name: "flow-100k-rss",
            unit: "MB RSS",
            samples,
            target: 300.0,
            higher_is_better: false,
        }
    } else {
        Figure {
            name: "flow-100k",
            unit: "s",
            samples,
            target: 3.0,
            higher_is_better: false,
        }
    })
}

/// `weft run` of 200 `true` steps, minus 200 bare spawns of `true`, per step, in ms.
pub(crate) async fn commands(exe: &Path, repeat: u32) -> Result<Figure, Error> {
    commands_printing(exe, repeat, None).await
}

/// The same flow with every task printing `lines` lines (`seq 1 LINES`), its output kept for
/// `weft logs` (`logged`) or not (`--log-cap 0`): ms per step beyond running `seq` itself.
pub(crate) async fn commands_printing(
    exe: &Path,
    repeat: u32,
    printing: Option<(usize, bool)>,
) -> Result<Figure, Error> {
    const STEPS: usize = 200;
    let argv: Vec<String> = match printing {
        None => vec!["true".into()],
        Some((lines, _)) => vec!["seq".into(), "1".into(), lines.to_string()],
    };
    let quoted: Vec<String> = argv.iter().map(|a| format!("\"{a}\"")).collect();
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let dir = tempdir()?;
        let mut flow = String::from("name = \"commands\"\n");
        for i in 0..STEPS {
            flow.push_str(&format!(
                "[[task]]\nname = \"s{i}\"\nrun = [{}]\n",
                quoted.join(", ")
            ));
            if i > 0 {
                flow.push_str(&format!("after = [\"s{}\"]\n", i - 1));
            }
        }
        let file = dir.join("commands.toml");
        std::fs::write(&file, flow).map_err(|e| Error::Failed(e.to_string()))?;
        let t = Instant::now();
        let log_cap = match printing {
            Some((_, false)) => "0",
            _ => "1MiB",
        };
        let status = tokio::process::Command::new(exe)
            .arg("run")
            .arg(&file)
            .arg("--json")
            .arg("--log-cap")
            .arg(log_cap)
            .arg("--db")
            .arg(dir.join("weft.db"))
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
        let weft_secs = t.elapsed().as_secs_f64();
        if !status.success() {
            return Err(Error::Failed("the commands flow failed".into()));
        }
        let t = Instant::now();
        for _ in 0..STEPS {
            // Its output read to the end, as weft reads it.
            tokio::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::piped())
                .process_group(0)
                .output()
                .await
                .map_err(|e| Error::Failed(e.to_string()))?;
        }
        let spawn_secs = t.elapsed().as_secs_f64();
        samples.push((weft_secs - spawn_secs) * 1000.0 / STEPS as f64);
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(Figure {
        name: match printing {
            None => "commands",
            Some((_, true)) => "commands-printing",
            Some((_, false)) => "commands-printing-unlogged",
        },
        unit: "ms/step",
        samples,
        target: 2.0,
        higher_is_better: false,
    })
}
