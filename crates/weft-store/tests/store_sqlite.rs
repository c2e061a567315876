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
