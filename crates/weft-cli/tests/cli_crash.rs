//! Crash tests: SIGKILL a real `weft run` at random moments and continue with
//! `weft plans resume`. Side-effect files count how often each step really ran.

mod common;
use common::{step, text, Sandbox};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const CHAINS: usize = 4;
const LENGTH: usize = 25;

fn chain_flow() -> String {
    let mut f = String::from("name = \"crash\"\n");
    for c in 0..CHAINS {
        for i in 0..LENGTH {
            f.push_str(&format!(
                "[[task]]\nname = \"c{c}s{i}\"\nrun = [\"sh\", \"-c\", 'echo ran >> \"runs/$WEFT_STEP\"; sleep 0.08']\n"
            ));
            if i > 0 {
                f.push_str(&format!("after = [\"c{c}s{}\"]\n", i - 1));
            }
        }
    }
    f
}

fn spawn(sb: &Sandbox, args: &[&str]) -> Child {
    sb.weft()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn weft")
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn states(sb: &Sandbox, id: &str) -> Vec<(String, String)> {
    let plan = sb.show(id);
    let names = plan["plan"]["flow"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("").to_string());
    let states = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["state"].as_str().unwrap_or("").to_string());
    names.zip(states).collect()
}

/// A small deterministic generator, seeded from the clock, for kill moments.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

#[test]
fn sigkill_at_random_moments_then_resume_runs_every_step_at_most_twice() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path().join("runs")).expect("mkdir runs");
    sb.write("crash.toml", &chain_flow());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    eprintln!("kill moments seeded with {seed}");
    let mut rng = Lcg(seed);

    let mut child = spawn(&sb, &["run", "crash.toml", "--parallelism", "4"]);
    let id = wait_for("the plan to be created", || {
        let out = sb.run(&["plans", "list", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        list[0]["id"].as_str().map(str::to_string)
    });
    let mut kills = 0;
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(rng.next(100, 500)));
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        child.kill().expect("SIGKILL weft");
        child.wait().expect("reap");
        kills += 1;
        let interrupted: Vec<String> = states(&sb, &id)
            .into_iter()
            .filter(|(_, s)| s == "running")
            .map(|(n, _)| n)
            .collect();
        child = spawn(&sb, &["plans", "resume", &id, "--parallelism", "4"]);
        // Before the next kill, let the interrupted steps finish their one re-run.
        wait_for("interrupted steps to be re-run", || {
            let now = states(&sb, &id);
            let done = interrupted
                .iter()
                .all(|n| now.iter().any(|(m, s)| m == n && s == "success"));
            done.then_some(())
        });
    }
    let status = child.wait().expect("wait for the last run");
    eprintln!("killed weft {kills} times");
    assert!(
        kills >= 1,
        "the flow finished before the first kill; make it longer"
    );
    assert_eq!(
        status.code(),
        Some(0),
        "the last resume should finish the plan"
    );
    let plan = sb.show(&id);
    assert_eq!(plan["result"], "success");
    for c in 0..CHAINS {
        for i in 0..LENGTH {
            let name = format!("c{c}s{i}");
            let runs =
                std::fs::read_to_string(sb.path().join("runs").join(&name)).unwrap_or_default();
            let n = runs.lines().count();
            assert!((1..=2).contains(&n), "{name} ran {n} times");
            assert_eq!(step(&plan, &name)["state"], "success");
        }
    }
}

#[test]
fn a_non_idempotent_step_interrupted_by_a_crash_pauses_the_plan() {
    let sb = Sandbox::new();
    sb.write(
        "once.toml",
        "name = \"once\"\n[[task]]\nname = \"charge\"\nidempotent = false\nrun = [\"sh\", \"-c\", 'echo charged >> charges; if [ \"$WEFT_ATTEMPT\" = 1 ]; then sleep 20; fi']\n[[task]]\nname = \"receipt\"\nafter = [\"charge\"]\nrun = [\"true\"]\n",
    );
    let mut child = spawn(&sb, &["run", "once.toml"]);
    let id = wait_for("charge to be running", || {
        let out = sb.run(&["plans", "list", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let id = list[0]["id"].as_str()?.to_string();
        let running = states(&sb, &id)
            .iter()
            .any(|(n, s)| n == "charge" && s == "running");
        (running && sb.path().join("charges").exists()).then_some(id)
    });
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    let out = sb.run(&["plans", "resume", &id]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let plan = sb.show(&id);
    assert_eq!(plan["plan"]["state"], "paused");
    assert_eq!(step(&plan, "charge")["state"], "error");
    assert!(step(&plan, "charge")["failure"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("abnormal termination"));
    assert_eq!(
        std::fs::read_to_string(sb.path().join("charges"))
            .expect("charges")
            .lines()
            .count(),
        1,
        "not re-run"
    );

    // The operator decides it is safe: resume re-runs it.
    let out = sb.run(&["plans", "resume", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(sb.show(&id)["result"], "success");
    assert_eq!(
        std::fs::read_to_string(sb.path().join("charges"))
            .expect("charges")
            .lines()
            .count(),
        2
    );
}

#[test]
fn resuming_a_plan_whose_runner_is_alive_is_refused() {
    let sb = Sandbox::new();
    sb.write(
        "slow.toml",
        "name = \"slow\"\n[[task]]\nname = \"wait\"\nrun = [\"sleep\", \"20\"]\n",
    );
    let mut child = spawn(&sb, &["run", "slow.toml"]);
    let id = wait_for("the step to run", || {
        let out = sb.run(&["plans", "list", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let id = list[0]["id"].as_str()?.to_string();
        states(&sb, &id)
            .iter()
            .any(|(_, s)| s == "running")
            .then_some(id)
    });
    let out = sb.run(&["plans", "resume", &id]);
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert_eq!(
        out.status.code(),
        Some(2),
        "resuming a running plan is bad input"
    );
    assert!(
        text(&out.stderr).contains("is running and being executed by weft@")
            && text(&out.stderr).contains("which is alive"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_finished_plan_cannot_be_resumed() {
    let sb = Sandbox::new();
    sb.write(
        "ok.toml",
        "name = \"ok\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n",
    );
    assert_eq!(sb.run(&["run", "ok.toml"]).status.code(), Some(0));
    let id = sb.last_plan();
    let out = sb.run(&["plans", "resume", &id[..13]]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("it's stopped"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sigint_stops_running_commands_and_resume_finishes_the_plan() {
    let sb = Sandbox::new();
    sb.write(
        "long.toml",
        "name = \"long\"\n[[task]]\nname = \"wait\"\nrun = [\"sh\", \"-c\", 'echo $$ > wait.pid; if [ \"$WEFT_ATTEMPT\" = 1 ] && [ ! -e resumed ]; then sleep 30; fi']\n",
    );
    let mut child = spawn(&sb, &["run", "long.toml"]);
    let pid = wait_for("the command to start", || {
        std::fs::read_to_string(sb.path().join("wait.pid")).ok()
    });
    // SAFETY: kill(2) on a child process we spawned.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().expect("reap");
    assert_eq!(status.code(), Some(130));
    let gone = wait_for("the command's process group to die", || {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        (stat.is_empty() || stat.split(") ").nth(1).unwrap_or("").starts_with('Z')).then_some(true)
    });
    assert!(gone);
    let id = sb.last_plan();
    let plan = sb.show(&id);
    assert_eq!(
        plan["plan"]["state"], "running",
        "an interrupted plan is left for resume"
    );
    assert_eq!(
        step(&plan, "wait")["state"],
        "running",
        "the kill is not recorded as a failure"
    );
    std::fs::write(sb.path().join("resumed"), "").expect("mark");
    let out = sb.run(&["plans", "resume", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
