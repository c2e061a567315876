//! SQLite-specific behaviour: durability across reopen, schema versions, bad files.

use std::collections::BTreeMap;
use weft_model::flow::FlowBuilder;
use weft_model::PlanId;
use weft_store::sqlite::{SqliteStore, SCHEMA_VERSION};
use weft_store::{Error, NewPlan, Store};

#[tokio::test]
async fn a_plan_survives_reopening_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weft.db");
    let id = PlanId::new();
    {
        let store = SqliteStore::open(&path).expect("open");
        let flow = FlowBuilder::linear("f")
            .task("a", "noop", "1", |t| t)
            .build()
            .expect("flow");
        store
            .create_plan(NewPlan {
                id,
                ..NewPlan::new(flow, BTreeMap::new())
            })
            .await
            .expect("create");
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.load_plan(id).await.expect("load").steps.len(), 1);
}

#[test]
fn a_database_from_a_newer_weft_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weft.db");
    drop(SqliteStore::open(&path).expect("open"));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("bump");
    drop(conn);
    match SqliteStore::open(&path) {
        Err(e @ Error::SchemaTooNew { .. }) => {
            assert!(
                e.to_string().contains("newer than this weft supports"),
                "{e}"
            )
        }
        Err(other) => panic!("expected SchemaTooNew, got {other}"),
        Ok(_) => panic!("expected SchemaTooNew, got a store"),
    }
}

#[test]
fn a_file_that_is_not_a_database_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weft.db");
    std::fs::write(&path, vec![b'x'; 8192]).expect("write junk");
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert!(err.is_unavailable());
}

#[test]
fn a_foreign_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.execute_batch("CREATE TABLE customers (id INTEGER)")
        .expect("create");
    drop(conn);
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(err.to_string().contains("not a weft database"), "{err}");
}

#[test]
fn a_missing_directory_is_named() {
    let err = SqliteStore::open(std::path::Path::new("/nonexistent-dir/weft.db"))
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("/nonexistent-dir does not exist"),
        "{err}"
    );
}

#[test]
fn journal_mode_and_synchronous_are_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weft.db");
    let _store = SqliteStore::open(&path).expect("open");
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
}

/// Regression: two processes opening a new database at once both ran the migration, and the
/// loser failed with "table plans already exists" (seen as a `weft run` dying at start while
/// `weft plans list` polled the same file).
#[test]
fn opening_a_new_database_from_many_connections_at_once_migrates_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weft.db");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                SqliteStore::open(&path)
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread").expect("every open succeeds");
    }
}

fn chunk(plan: PlanId, offset: u64, data: &[u8]) -> weft_store::LogChunk {
    weft_store::LogChunk {
        key: weft_store::LogKey {
            plan,
            step: 0,
            attempt: 1,
            task: String::new(),
            action: "execute".into(),
            stream: "stdout".into(),
        },
        offset,
        at: 7,
        data: data.to_vec(),
    }
}

async fn printed(store: &SqliteStore, plan: PlanId) -> Vec<Vec<u8>> {
    store
        .read_logs(weft_store::LogQuery {
            plan,
            ..weft_store::LogQuery::default()
        })
        .await
        .expect("read")
        .into_iter()
        .map(|r| r.chunk.data)
        .collect()
}

/// Schema 15 kept tasks' output in the database; opening it with this version moves it to the
/// files beside it, first among them, and drops the table.
#[tokio::test]
async fn output_kept_in_the_database_by_an_older_version_moves_to_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weft.db");
    drop(SqliteStore::open(&path).expect("open"));
    let plan = PlanId::new();
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.execute_batch(
        "CREATE TABLE step_logs (
             id INTEGER PRIMARY KEY, plan_id TEXT NOT NULL, step INTEGER NOT NULL,
             attempt INTEGER NOT NULL, task TEXT NOT NULL, action TEXT NOT NULL,
             stream TEXT NOT NULL, pos INTEGER NOT NULL, at INTEGER NOT NULL, data BLOB NOT NULL);",
    )
    .expect("old table");
    conn.execute(
        "INSERT INTO step_logs (plan_id, step, attempt, task, action, stream, pos, at, data)
         VALUES (?1, 0, 1, '', 'execute', 'stdout', 0, 7, ?2)",
        rusqlite::params![plan.to_string(), b"old\n".to_vec()],
    )
    .expect("old row");
    conn.pragma_update(None, "user_version", SCHEMA_VERSION - 1)
        .expect("old version");
    drop(conn);
    let store = SqliteStore::open(&path).expect("migrate");
    store
        .write_logs(weft_store::LogWrite {
            append: vec![chunk(plan, 4, b"new\n")],
            drop: Vec::new(),
        })
        .await
        .expect("write");
    assert_eq!(
        printed(&store, plan).await,
        [b"old\n".to_vec(), b"new\n".to_vec()]
    );
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'step_logs'",
            [],
            |r| r.get(0),
        )
        .expect("query");
    assert_eq!(left, 0);
}

/// Output lives in files beside the database, readable by their owner only, and a backup
/// takes them along.
#[tokio::test]
async fn output_is_kept_beside_the_database_and_backed_up_with_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weft.db");
    let store = SqliteStore::open(&path).expect("open");
    let plan = PlanId::new();
    store
        .write_logs(weft_store::LogWrite {
            append: vec![chunk(plan, 0, b"secret\n")],
            drop: Vec::new(),
        })
        .await
        .expect("write");
    let logs = dir.path().join("weft.db-logs");
    let plan_dir = logs.join(plan.to_string());
    for d in [&logs, &plan_dir] {
        let mode = std::fs::metadata(d).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", d.display());
    }
    for f in std::fs::read_dir(&plan_dir).expect("files") {
        let mode = f
            .expect("file")
            .metadata()
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let copy = dir.path().join("copy.db");
    store.backup(copy.clone()).await.expect("backup");
    let restored = SqliteStore::open(&copy).expect("open the copy");
    assert_eq!(printed(&restored, plan).await, [b"secret\n".to_vec()]);
}
