//! Bad input of every kind: a clear message naming what is wrong, exit code 2 (or 3 for a
//! store that cannot be used), and nothing written.

mod common;
use common::{text, Sandbox};

/// Runs `weft run FILE` on a flow with `body`; returns stderr after checking the exit code
/// and that no database was created.
fn refused(body: &str, args: &[&str]) -> String {
    let sb = Sandbox::new();
    sb.write("flow.toml", body);
    let mut all = vec!["run", "flow.toml"];
    all.extend_from_slice(args);
    let out = sb.run(&all);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {} stderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(!sb.db().exists(), "nothing may be written for bad input");
    text(&out.stderr)
}

const TASK_A: &str = "[[task]]\nname = \"a\"\nrun = [\"true\"]\n";

#[test]
fn duplicate_task_names() {
    let e = refused(&format!("name = \"f\"\n{TASK_A}{TASK_A}"), &[]);
    assert!(
        e.contains("flow.toml:6: task `a`: field `name`: duplicate task name `a`"),
        "{e}"
    );
}

#[test]
fn after_naming_an_unknown_task() {
    let e = refused(
        &format!(
            "name = \"f\"\n{TASK_A}[[task]]\nname = \"b\"\nrun = [\"true\"]\nafter = [\"aa\"]\n"
        ),
        &[],
    );
    assert!(
        e.contains("flow.toml:8: task `b`: field `after`: unknown task `aa` (did you mean `a`?)"),
        "{e}"
    );
}

#[test]
fn a_cycle_lists_its_tasks() {
    let e = refused(
        "name = \"f\"\n[[task]]\nname = \"x\"\nrun = [\"true\"]\nafter = [\"y\"]\n[[task]]\nname = \"y\"\nrun = [\"true\"]\nafter = [\"x\"]\n",
        &[],
    );
    assert!(e.contains("flow.toml: cycle between tasks: "), "{e}");
    assert!(
        e.contains("x -> y -> x") || e.contains("y -> x -> y"),
        "{e}"
    );
}

#[test]
fn a_requires_nothing_provides() {
    let e = refused(
        "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\nrequires = [\"ghost\"]\n",
        &[],
    );
    assert!(e.contains("flow.toml:3: task `a`: field `requires`: requires `ghost`, which no task provides and no input supplies"), "{e}");
}

#[test]
fn a_value_provided_by_two_tasks() {
    let e = refused(
        "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\nprovides = [\"v\"]\n[[task]]\nname = \"b\"\nrun = [\"true\"]\nprovides = [\"v\"]\n",
        &[],
    );
    assert!(
        e.contains("value `v` is provided by both `a` and `b`"),
        "{e}"
    );
}

#[test]
fn an_unknown_key_with_a_suggestion() {
    let e = refused(
        "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\ntimeuot = \"1s\"\n",
        &[],
    );
    assert!(
        e.contains("flow.toml:5: unknown key `timeuot` (did you mean `timeout`?)"),
        "{e}"
    );
}

#[test]
fn a_missing_required_input() {
    let e = refused(
        &format!("name = \"f\"\n[inputs]\nversion = {{ required = true }}\n{TASK_A}"),
        &[],
    );
    assert!(
        e.contains("missing required input: version; pass it with --input NAME=VALUE"),
        "{e}"
    );
}

#[test]
fn an_unknown_input() {
    let e = refused(
        &format!("name = \"f\"\n{TASK_A}"),
        &["--input", "colour=red"],
    );
    assert!(
        e.contains("unknown input `colour`; the flow takes: no inputs"),
        "{e}"
    );
}

#[test]
fn a_malformed_input_argument() {
    let e = refused(&format!("name = \"f\"\n{TASK_A}"), &["--input", "novalue"]);
    assert!(e.contains("`novalue` is not NAME=VALUE"), "{e}");
    let e = refused(&format!("name = \"f\"\n{TASK_A}"), &["--input", "n:={bad"]);
    assert!(e.contains("input `n`: `{bad` is not valid JSON"), "{e}");
}

#[test]
fn a_bad_duration() {
    let e = refused(
        "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\ntimeout = \"soon\"\n",
        &[],
    );
    assert!(
        e.contains("flow.toml:5: task `a`: field `timeout`: bad duration `soon`"),
        "{e}"
    );
}

#[test]
fn an_empty_run_and_a_shell_string() {
    let e = refused("name = \"f\"\n[[task]]\nname = \"a\"\nrun = []\n", &[]);
    assert!(
        e.contains("flow.toml:4: task `a`: field `run`: `run` is empty"),
        "{e}"
    );
    let e = refused(
        "name = \"f\"\n[[task]]\nname = \"a\"\nrun = \"make all\"\n",
        &[],
    );
    assert!(e.contains("must be an argument list"), "{e}");
}

#[test]
fn a_subflow_that_does_not_exist() {
    let e = refused(
        "name = \"f\"\n[[task]]\nname = \"a\"\nflow = \"nope.toml\"\n",
        &[],
    );
    assert!(
        e.contains("flow.toml:4: task `a`: field `flow`: subflow file `nope.toml` does not exist"),
        "{e}"
    );
}

#[test]
fn a_subflow_that_includes_itself() {
    let e = refused(
        "name = \"f\"\n[[task]]\nname = \"me\"\nflow = \"flow.toml\"\n",
        &[],
    );
    assert!(e.contains("subflow includes itself"), "{e}");
    assert!(e.contains("flow.toml -> "), "{e}");
}

#[test]
fn a_toml_syntax_error_names_the_line() {
    let e = refused("name = \"f\"\n[[task]\nname = \"a\"\n", &[]);
    assert!(e.contains("flow.toml:2:"), "{e}");
}

#[test]
fn a_flow_file_that_does_not_exist() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "missing.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("missing.toml: cannot read flow file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_cli_arguments() {
    let sb = Sandbox::new();
    let out = sb.run(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    let out = sb.run(&["run", "x.toml", "--parallelism", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--parallelism"),
        "{}",
        text(&out.stderr)
    );
    let out = sb.run(&["plans", "show", "not-a-plan"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("there is no weft store at"),
        "{}",
        text(&out.stderr)
    );
    sb.write(
        "ok.toml",
        "name = \"ok\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n",
    );
    assert_eq!(sb.run(&["run", "ok.toml"]).status.code(), Some(0));
    let out = sb.run(&["plans", "show", "not-a-plan"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no plan not-a-plan"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_corrupt_database_is_a_clear_error_with_exit_code_3() {
    let sb = Sandbox::new();
    std::fs::write(sb.db(), vec![b'#'; 4096]).expect("write junk");
    let out = sb.run(&["plans", "list"]);
    assert_eq!(out.status.code(), Some(3));
    let e = text(&out.stderr);
    assert!(
        e.contains("weft.db") && e.contains("not a SQLite database"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(sb.db()).expect("read"),
        vec![b'#'; 4096],
        "the file is left alone"
    );
}

#[test]
fn an_unknown_database_scheme_is_refused() {
    let sb = Sandbox::new();
    let out = sb.run(&["plans", "list", "--db", "mysql://localhost/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown database scheme `mysql://`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_locked_database_is_a_clear_error() {
    let sb = Sandbox::new();
    sb.write("ok.toml", &format!("name = \"f\"\n{TASK_A}"));
    assert_eq!(sb.run(&["run", "ok.toml"]).status.code(), Some(0));
    // Another process (this test) holds an exclusive lock on the database.
    let conn = rusqlite::Connection::open(sb.db()).expect("open");
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
        .expect("lock");
    let out = sb.run(&["run", "ok.toml"]);
    drop(conn);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("locked by another process"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_unparseable_start_time_or_delay() {
    let e = refused(
        &format!("name = \"f\"\n{TASK_A}"),
        &["--at", "next tuesday"],
    );
    assert!(e.contains("`next tuesday` is not a time"), "{e}");
    let e = refused(
        &format!("name = \"f\"\n{TASK_A}"),
        &["--at", "2030-01-01 09:00 Mars/Olympus"],
    );
    assert!(e.contains("Mars/Olympus"), "{e}");
    let e = refused(
        &format!("name = \"f\"\n{TASK_A}"),
        &["--at", "2020-01-01T10:00:00+02:00"],
    );
    assert!(
        e.contains("is in the past") && e.contains("--allow-past"),
        "{e}"
    );
    let e = refused(&format!("name = \"f\"\n{TASK_A}"), &["--delay", "a while"]);
    assert!(e.contains("bad duration `a while`"), "{e}");
    // Resolving --after opens the store; still nothing is planned.
    let sb = Sandbox::new();
    sb.write("flow.toml", &format!("name = \"f\"\n{TASK_A}"));
    let out = sb.run(&["submit", "flow.toml", "--after", "not-a-plan"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no plan not-a-plan"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&sb.run(&["plans", "list"]).stdout).contains("no plans"));
}

#[test]
fn a_node_on_an_in_memory_store_is_refused() {
    let sb = Sandbox::new();
    let out = sb.run(&["serve", "--db", "memory:"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("a node needs a store other processes can reach"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_lease_too_short_to_be_safe_is_refused() {
    let sb = Sandbox::new();
    let out = sb.run(&["serve", "--lease", "10ms"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--lease 10ms is too short"),
        "{}",
        text(&out.stderr)
    );
    assert!(!sb.db().exists(), "nothing written");
}

#[test]
fn bad_groups() {
    const GROUP: &str = "name = \"f\"\n[[group]]\nname = \"g\"\n[[group.task]]\nname = \"work\"\nrun = [\"true\"]\n";
    let e = refused(
        &GROUP.replace(
            "run = [\"true\"]\n",
            "run = [\"true\"]\nlifecycle = { hook = \"prestart\" }\n",
        ),
        &[],
    );
    assert!(
        e.contains("flow.toml:3: task `g`: group `g` has no main task"),
        "{e}"
    );
    let e = refused(
        &format!("{GROUP}[[group.task]]\nname = \"tidy\"\nrun = [\"true\"]\nlifecycle = {{ hook = \"poststop\", sidecar = true }}\n"),
        &[],
    );
    assert!(
        e.contains("flow.toml:10: task `g/tidy`: field `lifecycle.sidecar`: a poststop task cannot be a sidecar"),
        "{e}"
    );
    let e = refused(
        &format!("{GROUP}[[group.task]]\nname = \"x\"\nrun = [\"true\"]\nlifecycle = {{ hook = \"afterwards\" }}\n"),
        &[],
    );
    assert!(
        e.contains("flow.toml:10: task `g/x`: field `lifecycle.hook`: unknown hook `afterwards`"),
        "{e}"
    );
    let e = refused(&format!("{GROUP}{TASK_A}after = [\"g/work\"]\n"), &[]);
    assert!(
        e.contains("flow.toml:10: task `a`: field `after`: `g/work` is a task inside group `g`"),
        "{e}"
    );
}

/// Regression (issue 12): these were accepted and failed at spawn, set the wrong variable, lost
/// an input, hung or ran out of memory. Each is refused before anything is written, with the
/// file, line and field.
#[test]
fn hostile_flows_are_refused_up_front() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"echo\", \"x\\u0000y\"]\n",
            &[],
            "flow.toml:4: task `a`: field `run`: argument 2 holds a NUL byte",
        ),
        (
            "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\nenv = { \"PATH=/tmp/evil:\" = \"x\" }\n",
            &[],
            "flow.toml:5: task `a`: field `env`: variable name `PATH=/tmp/evil:` holds `=`",
        ),
        (
            "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\nenv = { \"\" = \"x\" }\n",
            &[],
            "field `env`: an empty variable name",
        ),
        (
            "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\nenv = { K = \"a\\u0000b\" }\n",
            &[],
            "field `env`: variable `K` holds a NUL byte",
        ),
        (
            "name = \"f\"\n[inputs]\ndb-host = { default = \"a\" }\ndb_host = { default = \"b\" }\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n",
            &[],
            "would both reach tasks as WEFT_IN_DB_HOST",
        ),
        (
            "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\ncwd = \"no/such/dir\"\n",
            &[],
            "flow.toml:5: task `a`: field `cwd`: working directory",
        ),
        (
            "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\nretry = { attempts = 2, delay = \"9999999999999h\" }\n",
            &[],
            "is longer than the longest weft takes, 365d",
        ),
        (
            "name = \"f\"\n[[task]]\nname = \"a\"\nflow = \"/dev/zero\"\n",
            &[],
            "not a regular file",
        ),
        (
            "name = \"f\"\n[inputs]\nx = { required = true }\n[[task]]\nname = \"a\"\nrequires = [\"x\"]\nrun = [\"true\"]\n",
            // A JSON string holding NUL (the shell cannot pass the byte itself).
            &["--input", r#"x:="a\u0000b""#],
            "input `x` holds a NUL byte",
        ),
    ];
    for (body, args, wanted) in cases {
        let e = refused(body, args);
        assert!(e.contains(wanted), "wanted {wanted:?} in: {e}");
    }
}

#[test]
fn a_flow_that_is_a_fifo_or_a_device_is_refused_at_once() {
    let sb = Sandbox::new();
    let fifo = sb.path().join("flow.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    for flow in [fifo.display().to_string(), "/dev/zero".to_string()] {
        let out = sb.run(&["run", &flow]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("not a regular file"),
            "{}",
            text(&out.stderr)
        );
    }
}
