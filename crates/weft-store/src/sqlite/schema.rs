//! The SQLite schema and its versioned migrations. The version lives in `PRAGMA user_version`.

use crate::{Error, Result};
use rusqlite::Connection;

/// Migrations in order; migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE plans (
    id          TEXT PRIMARY KEY,
    flow_name   TEXT NOT NULL,
    flow        TEXT NOT NULL,
    inputs      TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    ended_at    INTEGER,
    phase       TEXT NOT NULL DEFAULT 'null'
);
CREATE INDEX plans_state ON plans(state);
CREATE TABLE steps (
    plan_id     TEXT NOT NULL,
    idx         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  INTEGER,
    ended_at    INTEGER,
    output      TEXT,
    failure     TEXT,
    PRIMARY KEY (plan_id, idx)
) WITHOUT ROWID;
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    plan_id     TEXT NOT NULL,
    step        INTEGER,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    at          INTEGER NOT NULL,
    data        TEXT
);
CREATE INDEX events_plan ON events(plan_id, id);
CREATE TABLE locks (
    plan_id     TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    acquired_at INTEGER NOT NULL
);
"#,
    r#"
ALTER TABLE plans ADD COLUMN start_at INTEGER;
ALTER TABLE plans ADD COLUMN after_plans TEXT NOT NULL DEFAULT '[]';
ALTER TABLE steps ADD COLUMN deadline INTEGER;
ALTER TABLE steps ADD COLUMN warning TEXT;
CREATE INDEX locks_owner ON locks(owner);
CREATE TABLE inhibitions (
    plan_id     TEXT PRIMARY KEY,
    at          INTEGER NOT NULL
);
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
CREATE TABLE mailbox (
    id          INTEGER PRIMARY KEY,
    plan_id     TEXT NOT NULL,
    command     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    reason      TEXT
);
CREATE INDEX mailbox_pending ON mailbox(status, plan_id);
"#,
    r#"
ALTER TABLE events ADD COLUMN actor TEXT;
"#,
    r#"
ALTER TABLE nodes ADD COLUMN report TEXT;
"#,
    r#"
ALTER TABLE steps ADD COLUMN group_progress TEXT;
"#,
    r#"
ALTER TABLE nodes ADD COLUMN process TEXT;
"#,
    // Routing: the Rust tasks a plan needs and a node can run, as JSON arrays of `name@version`.
    r#"
ALTER TABLE plans ADD COLUMN needs TEXT NOT NULL DEFAULT '[]';
ALTER TABLE nodes ADD COLUMN capabilities TEXT NOT NULL DEFAULT '[]';
CREATE TABLE capabilities (
    capability  TEXT PRIMARY KEY,
    seen_at     INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // The job board: jobs in claim order (priority rank, then time-ordered id), their history,
    // and the entities (conductors) registered with it.
    r#"
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    flow         TEXT NOT NULL,
    inputs       TEXT NOT NULL,
    details      TEXT NOT NULL,
    priority     INTEGER NOT NULL,
    state        TEXT NOT NULL,
    owner        TEXT,
    attempts     INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    plan_id      TEXT NOT NULL,
    needs        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    modified_at  INTEGER NOT NULL,
    note         TEXT
);
CREATE INDEX jobs_claim ON jobs(state, priority, id);
CREATE UNIQUE INDEX jobs_plan ON jobs(plan_id);
CREATE INDEX jobs_owner ON jobs(owner, state);
CREATE TABLE job_events (
    id          INTEGER PRIMARY KEY,
    job_id      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    by          TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    note        TEXT
);
CREATE INDEX job_events_job ON job_events(job_id, id);
CREATE TABLE entities (
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    metadata      TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
"#,
    // Remote workers: messages waiting for their topic, and the workers registered.
    r#"
CREATE TABLE worker_messages (
    id             INTEGER PRIMARY KEY,
    topic          TEXT NOT NULL,
    kind           TEXT NOT NULL,
    correlation_id TEXT,
    reply_to       TEXT,
    attempt        INTEGER NOT NULL,
    plan_id        TEXT,
    body           TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX worker_messages_topic ON worker_messages(topic, id);
CREATE TABLE workers (
    topic        TEXT PRIMARY KEY,
    tasks        TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    process      TEXT
) WITHOUT ROWID;
"#,
    // How many requests each worker runs, as of its last heartbeat (`weft workers`), and its
    // own lease.
    "ALTER TABLE workers ADD COLUMN running INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE workers ADD COLUMN lease_ms INTEGER NOT NULL DEFAULT 10000;",
    // What tasks print: chunks of each step attempt's streams, at their byte position.
    r#"
CREATE TABLE step_logs (
    id       INTEGER PRIMARY KEY,
    plan_id  TEXT NOT NULL,
    step     INTEGER NOT NULL,
    attempt  INTEGER NOT NULL,
    task     TEXT NOT NULL,
    action   TEXT NOT NULL,
    stream   TEXT NOT NULL,
    pos      INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    data     BLOB NOT NULL
);
CREATE INDEX step_logs_plan ON step_logs(plan_id, id);
"#,
    // Pruning finds stopped plans by when they ended.
    "CREATE INDEX plans_ended ON plans(state, ended_at);",
    // Idempotency keys: the plan a key was first submitted with, and when.
    "CREATE TABLE plan_keys (
        key         TEXT PRIMARY KEY,
        plan_id     TEXT NOT NULL,
        created_at  INTEGER NOT NULL
     );
     CREATE INDEX plan_keys_plan ON plan_keys(plan_id);",
    // Schedules: a flow started on a cron's ticks.
    "CREATE TABLE schedules (
        name       TEXT PRIMARY KEY,
        flow       TEXT NOT NULL,
        inputs     TEXT NOT NULL,
        cron       TEXT NOT NULL,
        timezone   TEXT NOT NULL,
        overlap    TEXT NOT NULL,
        catch_up   TEXT NOT NULL,
        paused     INTEGER NOT NULL DEFAULT 0,
        next_at    INTEGER,
        last_plan  TEXT
     );",
    // Concurrency limits and queues: a row per slot held or place in line (step -1: the
    // plan's own), and queues' settings with their rate's bucket.
    "CREATE TABLE slots (
        plan_id  TEXT NOT NULL,
        step     INTEGER NOT NULL,
        scope    TEXT NOT NULL,
        key      TEXT NOT NULL,
        owner    TEXT NOT NULL,
        held     INTEGER NOT NULL DEFAULT 0,
        seq      INTEGER NOT NULL,
        since    INTEGER NOT NULL,
        polled   INTEGER NOT NULL,
        why      TEXT,
        PRIMARY KEY (plan_id, step, scope)
     );
     CREATE INDEX slots_scope ON slots(scope, key, held, seq);
     CREATE INDEX slots_owner ON slots(owner);
     CREATE TABLE queues (
        name        TEXT PRIMARY KEY,
        lim         INTEGER,
        rate_count  INTEGER,
        rate_ms     INTEGER,
        tokens      REAL NOT NULL,
        refilled_at INTEGER NOT NULL
     );",
    // Tasks' output lives in files beside the database (`super::logs`); what the table held
    // was written there before this runs (`super::import_logs`).
    "DROP TABLE step_logs;",
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Refuses a file that is not a weft database (or is a newer one) before anything is changed
/// in it — no pragma, no journal mode — by reading its version and its tables.
pub(super) fn check_identity(conn: &Connection) -> Result<()> {
    // One statement, one snapshot: another process may be creating the database right now.
    let (found, tables, has_plans): (i64, i64, bool) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), count(*),
                    coalesce(sum(name = 'plans'), 0) > 0
             FROM sqlite_master WHERE type = 'table'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(super::classify)?;
    if found > VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    let weft = if found == 0 { tables == 0 } else { has_plans };
    if weft {
        Ok(())
    } else {
        Err(Error::Corrupt(
            "this SQLite file is not a weft database (nothing in it was changed)".into(),
        ))
    }
}

/// Brings the schema up to [`VERSION`], refusing newer and foreign databases.
///
/// Everything happens in one IMMEDIATE transaction, which takes the write lock before reading
/// the version: two processes opening a new database at once cannot both migrate it.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(super::classify)?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(super::classify)?;
    if found > VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    if found == VERSION {
        return Ok(());
    }
    if found == 0 {
        let tables: i64 = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(super::classify)?;
        if tables > 0 {
            return Err(Error::Corrupt(
                "this SQLite file holds tables but is not a weft database".into(),
            ));
        }
    }
    for sql in MIGRATIONS.iter().skip(found as usize) {
        tx.execute_batch(sql).map_err(super::classify)?;
    }
    tx.pragma_update(None, "user_version", VERSION)
        .map_err(super::classify)?;
    tx.commit().map_err(super::classify)
}
