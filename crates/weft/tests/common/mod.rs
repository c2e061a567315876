//! Helpers for tests that drive the real `weft` binary against a real SQLite file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory with a database and flow files in it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("weft.db")
    }

    /// Writes a file into the sandbox and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// `weft ARGS` run in the sandbox with its database.
    pub fn weft(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
        c.current_dir(self.path())
            .env("WEFT_DB", self.db())
            .env_remove("WEFT_LOG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.weft().args(args).output().expect("run weft")
    }

    /// `weft plans show ID --json`, parsed.
    pub fn show(&self, id: &str) -> serde_json::Value {
        let out = self.run(&["plans", "show", id, "--json", "--history"]);
        assert!(
            out.status.success(),
            "plans show failed: {}",
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("plans show prints JSON")
    }

    /// The id of the newest plan.
    pub fn last_plan(&self) -> String {
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

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The step called `name` in a `plans show --json` value.
pub fn step<'a>(plan: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    plan["plan"]["flow"]["steps"]
        .as_array()
        .and_then(|steps| steps.iter().position(|s| s["name"] == name))
        .map(|i| &plan["steps"][i])
        .unwrap_or_else(|| panic!("no step {name}"))
}
