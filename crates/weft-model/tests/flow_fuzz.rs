//! The flow parser on hostile input (issue 12): random text, and valid flows cut, spliced and
//! garbled at random, never panic — every one parses or is refused with an error.

use proptest::prelude::*;
use std::path::Path;

const VALID: &str = r#"name = "release"
version = "1"
on_error = "revert"
[inputs]
version = { required = true }
token = { required = true, secret = true }
[defaults]
timeout = "1m"
[[task]]
name = "compile"
requires = ["version"]
provides = ["binary"]
run = ["sh", "-c", 'echo "{\"binary\": 1}"']
revert = ["rm", "-rf", "out"]
retry = { attempts = 3, backoff = "exponential", delay = "500ms", max_delay = "10s" }
env = { CC = "clang" }
warn_exit_codes = [3]
[[task]]
name = "approve"
after = ["compile"]
wait_for_event = { timeout = "1h" }
[[group]]
name = "site"
after = ["approve"]
restart = { attempts = 1, delay = "1s" }
[[group.task]]
name = "server"
run = ["python3", "-m", "http.server"]
lifecycle = { hook = "prestart", sidecar = true }
ready = { run = ["true"], interval = "100ms", timeout = "20s" }
[[group.task]]
name = "main"
run = ["true"]
"#;

fn parse(text: &str) {
    // Either outcome is fine; a panic fails the test.
    let _ = weft_model::flow::file::parse(text, Path::new("fuzz.toml"), Path::new("/"));
}

#[test]
fn the_seed_flow_is_valid() {
    weft_model::flow::file::parse(VALID, Path::new("fuzz.toml"), Path::new("/")).expect("valid");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        parse(&text);
    }

    #[test]
    fn garbled_flows_never_panic(
        edits in proptest::collection::vec((0usize..2000, 0usize..40, "\\PC{0,12}"), 1..6)
    ) {
        let mut text = VALID.to_string();
        for (at, cut, insert) in edits {
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + cut).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(at..end, &insert);
        }
        parse(&text);
    }

    #[test]
    fn odd_values_in_every_field_never_panic(
        field in proptest::sample::select(vec![
            "timeout", "retry", "run", "env", "after", "requires", "wait_for_event", "cwd",
            "warn_exit_codes", "phase", "idempotent", "lifecycle", "ready", "flow",
        ]),
        value in prop_oneof![
            Just("\"\"".to_string()), Just("[]".to_string()), Just("{}".to_string()),
            Just("-1".to_string()), Just("1e999".to_string()), Just("\"9999999999999999h\"".to_string()),
            Just("[[[]]]".to_string()), Just("{ a = { b = { c = [1, \"x\"] } } }".to_string()),
            Just("\"\\u0000\"".to_string()), Just("1979-05-27T07:32:00Z".to_string()),
            "\"\\PC{0,20}\"".prop_map(|s| s.replace(['\\', '"'], "")),
        ],
    ) {
        parse(&format!("name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n{field} = {value}\n"));
        parse(&format!("name = \"f\"\n[[group]]\nname = \"g\"\n[[group.task]]\nname = \"m\"\nrun = [\"true\"]\n{field} = {value}\n"));
    }
}
