//! `weft submit --key`: of many submissions with one idempotency key — racing from several
//! processes, on SQLite and on PostgreSQL — one plan is stored, and every one answers its id.

mod common;
use common::{text, Sandbox};
use std::collections::BTreeSet;

const FLOW: &str = "name = \"once\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n";

/// 5 processes × 10 submissions of `key`; the ids they printed.
fn race(sb: &Sandbox, key: &str) -> BTreeSet<String> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..5)
            .map(|_| {
                scope.spawn(|| {
                    (0..10)
                        .map(|_| {
                            let out = sb.run(&["submit", "once.toml", "--key", key]);
                            assert!(out.status.success(), "{}", text(&out.stderr));
                            text(&out.stdout).trim().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a submitting thread"))
            .collect()
    })
}

fn stored(sb: &Sandbox) -> usize {
    let out = sb.run(&["plans", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .expect("json")
        .len()
}

fn one_plan_per_key(sb: &Sandbox) {
    sb.write("once.toml", FLOW);
    // The store exists before the race (its creation is not what is tested).
    let first = sb.run(&["submit", "once.toml", "--key", "warm-up"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let ids = race(sb, "nightly-2030-01-01");
    assert_eq!(ids.len(), 1, "every submission answered one plan: {ids:?}");
    assert_eq!(stored(sb), 2, "the warm-up's plan and the raced key's");
    let out = sb.run(&["submit", "once.toml", "--key", "nightly-2030-01-01"]);
    assert!(
        text(&out.stderr).contains("already submitted with key `nightly-2030-01-01`"),
        "{}",
        text(&out.stderr)
    );
    // Another key is another plan; an expired one too.
    let out = sb.run(&[
        "submit",
        "once.toml",
        "--key",
        "nightly-2030-01-01",
        "--key-window",
        "0s",
    ]);
    assert!(out.status.success());
    assert_eq!(stored(sb), 3);
    let out = sb.run(&["submit", "once.toml", "--key", ""]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn racing_submissions_of_one_key_store_one_plan_on_sqlite() {
    one_plan_per_key(&Sandbox::new());
}

#[test]
fn racing_submissions_of_one_key_store_one_plan_on_postgres() {
    one_plan_per_key(&Sandbox::with_store(weft_testpg::url()));
}
