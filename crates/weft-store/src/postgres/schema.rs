//! The PostgreSQL schema and its versioned migrations. The version lives in `weft_schema`.
//!
//! Migrations run in one transaction under an advisory lock, so two processes opening a new
//! database at once cannot both migrate it, and a migration that fails (no permission to
//! create tables, say) leaves nothing behind: PostgreSQL's DDL is transactional.

use super::classify;
use crate::{Error, Result};
use tokio_postgres::Client;

/// Migrations in order; migration `i` takes the schema from version `i` to `i + 1`.
/// Steps and plans are updated in place many times: their pages keep room for the new row
/// versions (fillfactor), so that updates stay on the page and skip the indexes (HOT). Ids are `COLLATE "C"`: byte order, so that time-ordered plan ids sort by time and prefix
/// ranges work whatever the database's collation.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE plans (
    id          text COLLATE "C" PRIMARY KEY,
    flow_name   text NOT NULL,
    flow        text NOT NULL,
    inputs      text NOT NULL,
    state       text NOT NULL,
    created_at  bigint NOT NULL,
    started_at  bigint,
    ended_at    bigint,
    phase       text NOT NULL DEFAULT 'null',
    start_at    bigint,
    after_plans text NOT NULL DEFAULT '[]'
) WITH (fillfactor = 70);
CREATE INDEX plans_waiting ON plans (id) WHERE state IN ('planned', 'running', 'scheduled');
CREATE INDEX plans_state ON plans (state);
CREATE TABLE steps (
    plan_id        text COLLATE "C" NOT NULL,
    idx            integer NOT NULL,
    name           text NOT NULL,
    state          text NOT NULL,
    attempt        integer NOT NULL,
    started_at     bigint,
    ended_at       bigint,
    output         text,
    failure        text,
    deadline       bigint,
    warning        text,
    group_progress text,
    PRIMARY KEY (plan_id, idx)
) WITH (fillfactor = 60);
CREATE TABLE events (
    id          bigserial NOT NULL,
    plan_id     text COLLATE "C" NOT NULL,
    step        integer,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    at          bigint NOT NULL,
    data        text,
    actor       text
);
-- Read only by plan, in order: one index, no primary key to maintain on every transition.
CREATE INDEX events_plan ON events (plan_id, id);
CREATE TABLE locks (
    plan_id     text COLLATE "C" PRIMARY KEY,
    owner       text NOT NULL,
    acquired_at bigint NOT NULL
);
CREATE INDEX locks_owner ON locks (owner);
CREATE TABLE inhibitions (
    plan_id     text COLLATE "C" PRIMARY KEY,
    at          bigint NOT NULL
);
CREATE TABLE nodes (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    started_at   bigint NOT NULL,
    heartbeat_at bigint NOT NULL,
    report       text
);
CREATE TABLE mailbox (
    id          bigserial PRIMARY KEY,
    plan_id     text COLLATE "C" NOT NULL,
    command     text NOT NULL,
    created_at  bigint NOT NULL,
    status      text NOT NULL DEFAULT 'pending',
    reason      text
);
CREATE INDEX mailbox_pending ON mailbox (plan_id) WHERE status = 'pending';
"#,
    r#"
ALTER TABLE nodes ADD COLUMN process text;
"#,
    // Routing: the Rust tasks a plan needs and a node can run, as `name@version`.
    r#"
ALTER TABLE plans ADD COLUMN needs text[] NOT NULL DEFAULT '{}';
ALTER TABLE nodes ADD COLUMN capabilities text[] NOT NULL DEFAULT '{}';
CREATE TABLE capabilities (
    capability  text COLLATE "C" PRIMARY KEY,
    seen_at     bigint NOT NULL
);
"#,
    // The job board: jobs in claim order (priority rank, then time-ordered id), their history,
    // and the entities (conductors) registered with it.
    r#"
CREATE TABLE jobs (
    id           text COLLATE "C" PRIMARY KEY,
    name         text NOT NULL,
    flow         text NOT NULL,
    inputs       text NOT NULL,
    details      text NOT NULL,
    priority     integer NOT NULL,
    state        text NOT NULL,
    owner        text,
    attempts     integer NOT NULL,
    max_attempts integer NOT NULL,
    plan_id      text COLLATE "C" NOT NULL,
    needs        text[] NOT NULL,
    created_at   bigint NOT NULL,
    modified_at  bigint NOT NULL,
    note         text
) WITH (fillfactor = 70);
CREATE INDEX jobs_unclaimed ON jobs (priority, id) WHERE state = 'unclaimed';
CREATE INDEX jobs_board ON jobs (priority, id) WHERE state IN ('unclaimed', 'claimed');
CREATE INDEX jobs_trash ON jobs (priority, id) WHERE state = 'trashed';
CREATE UNIQUE INDEX jobs_plan ON jobs (plan_id);
CREATE INDEX jobs_owner ON jobs (owner) WHERE state = 'claimed';
CREATE TABLE job_events (
    id          bigserial NOT NULL,
    job_id      text COLLATE "C" NOT NULL,
    at          bigint NOT NULL,
    by          text NOT NULL,
    from_state  text,
    to_state    text NOT NULL,
    attempt     integer NOT NULL,
    note        text
);
CREATE INDEX job_events_job ON job_events (job_id, id);
CREATE TABLE entities (
    kind          text NOT NULL,
    name          text NOT NULL,
    metadata      text NOT NULL,
    registered_at bigint NOT NULL,
    PRIMARY KEY (kind, name)
);
"#,
    // Remote workers: messages waiting for their topic, and the workers registered.
    r#"
CREATE TABLE worker_messages (
    id             bigserial PRIMARY KEY,
    topic          text NOT NULL,
    kind           text NOT NULL,
    correlation_id text,
    reply_to       text,
    attempt        integer NOT NULL,
    plan_id        text,
    body           text NOT NULL,
    created_at     bigint NOT NULL
);
CREATE INDEX worker_messages_topic ON worker_messages (topic, id);
CREATE TABLE workers (
    topic        text PRIMARY KEY,
    tasks        text[] NOT NULL,
    started_at   bigint NOT NULL,
    heartbeat_at bigint NOT NULL,
    process      text
);
"#,
    // How many requests each worker runs, as of its last heartbeat (`weft workers`), and its
    // own lease.
    "ALTER TABLE workers ADD COLUMN running integer NOT NULL DEFAULT 0;
     ALTER TABLE workers ADD COLUMN lease_ms bigint NOT NULL DEFAULT 10000;",
    // What tasks print: chunks of each step attempt's streams, at their byte position.
    r#"
CREATE TABLE step_logs (
    id       bigserial PRIMARY KEY,
    plan_id  text COLLATE "C" NOT NULL,
    step     integer NOT NULL,
    attempt  integer NOT NULL,
    task     text NOT NULL,
    action   text NOT NULL,
    stream   text NOT NULL,
    pos      bigint NOT NULL,
    at       bigint NOT NULL,
    data     bytea NOT NULL
);
CREATE INDEX step_logs_plan ON step_logs (plan_id, id);
"#,
    // Pruning finds stopped plans by when they ended.
    "CREATE INDEX plans_ended ON plans (state, ended_at);",
    // Idempotency keys: the plan a key was first submitted with, and when.
    "CREATE TABLE plan_keys (
        key         text COLLATE \"C\" PRIMARY KEY,
        plan_id     text COLLATE \"C\" NOT NULL,
        created_at  bigint NOT NULL
     );
     CREATE INDEX plan_keys_plan ON plan_keys (plan_id);",
    // Schedules: a flow started on a cron's ticks.
    "CREATE TABLE schedules (
        name       text COLLATE \"C\" PRIMARY KEY,
        flow       text NOT NULL,
        inputs     text NOT NULL,
        cron       text NOT NULL,
        timezone   text NOT NULL,
        overlap    text NOT NULL,
        catch_up   text NOT NULL,
        paused     boolean NOT NULL DEFAULT false,
        next_at    bigint,
        last_plan  text
     );",
    // Concurrency limits and queues: a row per slot held or place in line (step -1: the
    // plan's own), and queues' settings with their rate's bucket.
    "CREATE TABLE slots (
        plan_id  text COLLATE \"C\" NOT NULL,
        step     integer NOT NULL,
        scope    text COLLATE \"C\" NOT NULL,
        key      text COLLATE \"C\" NOT NULL,
        owner    text NOT NULL,
        held     boolean NOT NULL DEFAULT false,
        seq      bigint GENERATED ALWAYS AS IDENTITY,
        since    bigint NOT NULL,
        polled   bigint NOT NULL,
        why      text,
        PRIMARY KEY (plan_id, step, scope)
     );
     CREATE INDEX slots_scope ON slots (scope, key, held, seq);
     CREATE INDEX slots_owner ON slots (owner);
     CREATE TABLE queues (
        name        text COLLATE \"C\" PRIMARY KEY,
        lim         integer,
        rate_count  integer,
        rate_ms     bigint,
        tokens      double precision NOT NULL,
        refilled_at bigint NOT NULL
     );",
    // `plans_ended` (state, ended_at) serves every look-up by state: a second index on state
    // cost every plan's insert and each of its transitions an index entry more.
    "DROP INDEX plans_state;",
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// An arbitrary key for the advisory lock that serializes migrations.
const MIGRATION_LOCK: i64 = 0x7765_6674_0001;

/// Brings the schema up to [`VERSION`], refusing newer and foreign databases.
pub(super) async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await.map_err(classify)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(classify)?;
    let has_version: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'weft_schema')",
            &[],
        )
        .await
        .map_err(classify)?
        .get(0);
    let found: i64 = if has_version {
        tx.query_one("SELECT version FROM weft_schema", &[])
            .await
            .map_err(classify)?
            .get(0)
    } else {
        0
    };
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
        let foreign: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema()
                                AND tablename IN ('plans', 'steps', 'events', 'locks', 'nodes', 'mailbox'))",
                &[],
            )
            .await
            .map_err(classify)?
            .get(0);
        if foreign {
            return Err(Error::Corrupt(
                "this database holds tables named like weft's but is not a weft database (no weft_schema table)".into(),
            ));
        }
        tx.batch_execute("CREATE TABLE weft_schema (version bigint NOT NULL); INSERT INTO weft_schema VALUES (0);")
            .await
            .map_err(classify)?;
    }
    for sql in MIGRATIONS.iter().skip(found as usize) {
        tx.batch_execute(sql).await.map_err(classify)?;
    }
    tx.execute("UPDATE weft_schema SET version = $1", &[&VERSION])
        .await
        .map_err(classify)?;
    tx.commit().await.map_err(classify)
}
