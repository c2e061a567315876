//! `weft plans prune` and `weft serve --retention`: stopped plans deleted with their history
//! and output, while a node keeps running others — nothing live is lost.

mod common;
use common::{text, wait_for, NodeProcess, Sandbox};
use std::time::Duration;

const FLOW: &str =
    "name = \"small\"\n[[task]]\nname = \"a\"\nrun = [\"sh\", \"-c\", \"echo out\"]\n\
                    [[task]]\nname = \"b\"\nafter = [\"a\"]\nrun = [\"true\"]\n";

fn plans(sb: &Sandbox) -> Vec<serde_json::Value> {
    let out = sb.run(&["plans", "list", "--json", "--limit", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("json")
}

#[test]
fn pruning_while_a_node_works_deletes_only_what_stopped() {
    let sb = Sandbox::new();
    sb.write("small.toml", FLOW);
    let _node = NodeProcess::start(&sb, "n1", &[]);
    let mut submitted = Vec::new();
    let mut pruned = 0u64;
    for round in 0..10 {
        for _ in 0..10 {
            let out = sb.run(&["submit", "small.toml"]);
            assert!(out.status.success(), "{}", text(&out.stderr));
            submitted.push(text(&out.stdout).trim().to_string());
        }
        let out = sb.run(&["plans", "prune", "--older-than", "0s", "--json"]);
        assert!(out.status.success(), "round {round}: {}", text(&out.stderr));
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        pruned += answer["pruned"].as_u64().expect("a count");
    }
    // Every plan not pruned finishes, successfully; those pruned had stopped.
    let left = wait_for("the plans left to finish", Duration::from_secs(60), || {
        let left = plans(&sb);
        left.iter().all(|p| p["state"] == "stopped").then_some(left)
    });
    assert!(left.iter().all(|p| p["result"] == "success"), "{left:#?}");
    assert_eq!(pruned + left.len() as u64, submitted.len() as u64);
    assert!(pruned > 0, "something stopped in time to be pruned");
    // A pruned plan is gone with its output.
    let kept: Vec<&str> = left.iter().filter_map(|p| p["id"].as_str()).collect();
    let gone = submitted
        .iter()
        .find(|id| !kept.contains(&id.as_str()))
        .expect("a pruned plan");
    let out = sb.run(&["plans", "show", gone]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = sb.run(&["logs", gone]);
    assert_ne!(out.status.code(), Some(0));
    let out = sb.run(&["plans", "prune", "--older-than", "soon"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_node_with_a_retention_prunes_by_itself() {
    let sb = Sandbox::new();
    sb.write("small.toml", FLOW);
    let node = NodeProcess::start(&sb, "n1", &["--retention", "1s"]);
    let out = sb.run(&["submit", "small.toml", "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for(
        "the node to prune the plan",
        Duration::from_secs(20),
        || plans(&sb).is_empty().then_some(()),
    );
    assert!(
        node.log().contains("pruned stopped plans"),
        "{}",
        node.log()
    );
}
