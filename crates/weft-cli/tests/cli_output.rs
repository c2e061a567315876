//! Regression tests for issue 12: what tasks print and pass on. A non-UTF-8 byte ended the
//! reading of a task's output (and what it printed after died of SIGPIPE); memory grew with the
//! longest line; a value over 128 KiB could not reach the task that required it.

mod common;
use common::{step, text, Sandbox};
use std::time::Duration;

#[test]
fn output_after_a_byte_that_is_not_utf8_is_read() {
    let sb = Sandbox::new();
    sb.write(
        "bytes.toml",
        "name = \"bytes\"\n[[task]]\nname = \"list\"\nprovides = [\"count\"]\nrun = [\"sh\", \"-c\", 'printf \"caf\\351.txt\\n\"; echo \"{\\\"count\\\": 1}\"; seq 1 20000']\n",
    );
    let out = sb.run(&["run", "bytes.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = sb.show(&sb.last_plan());
    assert_eq!(step(&plan, "list")["output"]["count"], 1);
}

/// Peak resident memory (kB) of `pid` until it exits.
fn peak_rss_kb(child: &mut std::process::Child) -> u64 {
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        if child.try_wait().expect("try_wait").is_some() {
            return peak;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_huge_line_keeps_memory_flat_and_a_later_object_is_the_output() {
    let sb = Sandbox::new();
    // 300 MB on one line, then the output.
    sb.write(
        "huge.toml",
        "name = \"huge\"\n[[task]]\nname = \"print\"\nprovides = [\"ok\"]\nrun = [\"sh\", \"-c\", 'head -c 300000000 /dev/zero | tr \"\\\\0\" a; echo; echo \"{\\\"ok\\\": 1}\"']\n",
    );
    let mut child = sb
        .weft()
        .args(["run", "huge.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let peak = peak_rss_kb(&mut child);
    let plan = sb.show(&sb.last_plan());
    assert_eq!(step(&plan, "print")["output"]["ok"], 1, "{plan}");
    assert!(peak < 100_000, "peak RSS {peak} kB for a 300 MB line");
}

#[test]
fn an_output_over_the_limit_fails_the_producer_with_a_clear_error() {
    let sb = Sandbox::new();
    sb.write(
        "big.toml",
        "name = \"big\"\non_error = \"fail\"\n[[task]]\nname = \"print\"\nprovides = [\"v\"]\nrun = [\"python3\", \"-c\", 'import json; print(json.dumps({\"v\": \"x\" * 2000000}))']\n",
    );
    let out = sb.run(&["run", "big.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let plan = sb.show(&sb.last_plan());
    let failure = &step(&plan, "print")["failure"];
    assert_eq!(failure["kinds"][0], "output_too_large", "{failure}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap_or("")
            .contains("a step's output is at most"),
        "{failure}"
    );
}

#[test]
fn a_value_too_large_for_a_variable_reaches_its_task_in_a_file() {
    let sb = Sandbox::new();
    sb.write(
        "large.toml",
        "name = \"large\"\n[[task]]\nname = \"make\"\nprovides = [\"blob\"]\nrun = [\"python3\", \"-c\", 'import json; print(json.dumps({\"blob\": \"x\" * 300000}))']\n[[task]]\nname = \"use\"\nrequires = [\"blob\"]\nrun = [\"sh\", \"-c\", 'test -z \"$WEFT_IN_BLOB\" && wc -c < \"$WEFT_IN_BLOB_FILE\" > size']\n",
    );
    let out = sb.run(&["run", "large.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let size = std::fs::read_to_string(sb.path().join("size")).expect("size");
    assert_eq!(size.trim(), "300000");
}
