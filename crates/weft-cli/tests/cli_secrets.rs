//! Regression tests for issue 11: secrets stay where they belong. Every task inherited weft's
//! own environment (a `WEFT_DB` with a password in it), a secret input was shown by
//! `plans show`, and the SQLite file was readable by everyone.

mod common;
use common::{text, Sandbox};
use std::os::unix::fs::PermissionsExt;

#[test]
fn tasks_do_not_inherit_wefts_own_variables() {
    let sb = Sandbox::new();
    sb.write(
        "env.toml",
        "name = \"env\"\n[[task]]\nname = \"env\"\nrun = [\"sh\", \"-c\", 'env > env.txt']\nenv = { WEFT_WANTED = \"asked for\" }\n",
    );
    let out = sb
        .weft()
        .args(["run", "env.toml"])
        .env("WEFT_TOKEN", "t0ken")
        .env("UNRELATED", "kept")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let env = std::fs::read_to_string(sb.path().join("env.txt")).expect("env.txt");
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    assert!(!names.contains(&"WEFT_DB"), "{env}");
    assert!(!names.contains(&"WEFT_TOKEN"), "{env}");
    assert!(
        names.contains(&"UNRELATED"),
        "the rest of the environment is kept"
    );
    assert!(
        names.contains(&"WEFT_PLAN_ID"),
        "weft's variables for the task are set"
    );
    assert!(
        env.contains("WEFT_WANTED=asked for"),
        "a flow may ask for one"
    );
}

#[test]
fn a_secret_input_reaches_its_task_but_is_never_shown() {
    let sb = Sandbox::new();
    sb.write(
        "secret.toml",
        "name = \"secret\"\n[inputs]\npassword = { required = true, secret = true }\nuser = { default = \"ada\" }\n[[task]]\nname = \"login\"\nrequires = [\"password\", \"user\"]\nrun = [\"sh\", \"-c\", 'printf %s \"$WEFT_IN_PASSWORD\" > got']\n",
    );
    let out = sb.run(&["run", "secret.toml", "--input", "password=hunter2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("hunter2") && !text(&out.stderr).contains("hunter2"));
    assert_eq!(
        std::fs::read_to_string(sb.path().join("got")).expect("got"),
        "hunter2"
    );
    let id = sb.last_plan();
    for args in [
        vec!["plans", "show", id.as_str(), "--history"],
        vec!["plans", "show", id.as_str(), "--json", "--history"],
        vec!["plans", "history", id.as_str()],
        vec!["plans", "list", "--json"],
    ] {
        let out = sb.run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        assert!(
            !shown.contains("hunter2"),
            "{args:?} shows the secret: {shown}"
        );
    }
    let json = sb.show(&id);
    assert_eq!(json["plan"]["inputs"]["password"], "***");
    assert_eq!(
        json["plan"]["inputs"]["user"], "ada",
        "other inputs are shown"
    );
}

#[test]
fn a_new_sqlite_store_is_readable_by_its_owner_only() {
    let sb = Sandbox::new();
    sb.write(
        "ok.toml",
        "name = \"ok\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\n",
    );
    let out = sb.run(&["run", "ok.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for name in ["weft.db", "weft.db-wal", "weft.db-shm"] {
        let Ok(meta) = std::fs::metadata(sb.path().join(name)) else {
            continue;
        };
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{name} is readable by others"
        );
    }
}
