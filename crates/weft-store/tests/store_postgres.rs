//! What only the PostgreSQL store does: leases on the database's clock, wake-up hints, and
//! claims racing from many connections.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use weft_model::flow::FlowBuilder;
use weft_model::now_millis;
use weft_store::postgres::PostgresStore;
use weft_store::{NewPlan, NodeRecord, SharedStore, Store};

async fn store() -> SharedStore {
    Arc::new(
        PostgresStore::open(&weft_testpg::url())
            .await
            .expect("open"),
    )
}

fn plan() -> NewPlan {
    let flow = FlowBuilder::linear("pg")
        .task("a", "noop", "1", |t| t)
        .build()
        .expect("flow");
    NewPlan::new(flow, Default::default())
}

#[tokio::test]
async fn a_node_with_a_skewed_clock_neither_looks_dead_nor_keeps_a_dead_one_alive() {
    let store = store().await;
    let skew = 60_000;
    // A node whose clock is a minute behind registers and beats: the database's time is kept.
    let slow = NodeRecord {
        id: "slow/1".into(),
        name: "slow".into(),
        started_at: now_millis() - skew,
        heartbeat_at: now_millis() - skew,
        report: None,
        process: None,
        capabilities: Vec::new(),
    };
    store.register_node(slow).await.expect("register");
    store
        .heartbeat("slow/1".into(), now_millis() - skew)
        .await
        .expect("heartbeat");
    // Judged by the database's clock with a 10 s lease, it is alive.
    let now = store.clock().await.expect("clock");
    let beat = store.nodes().await.expect("nodes")[0].heartbeat_at;
    assert!(
        now - beat < 10_000,
        "a live node looks {}ms old",
        now - beat
    );
    // A node whose clock runs ahead cannot push its heartbeat into the future either.
    store
        .heartbeat("slow/1".into(), now_millis() + skew)
        .await
        .expect("heartbeat");
    let beat = store.nodes().await.expect("nodes")[0].heartbeat_at;
    let now = store.clock().await.expect("clock");
    assert!(
        beat <= now,
        "heartbeat {beat} is after the database's now {now}"
    );
}

#[tokio::test]
async fn submitting_a_plan_wakes_listeners_in_other_processes() {
    let url = weft_testpg::url();
    let listener = PostgresStore::open(&url).await.expect("open");
    let submitter = PostgresStore::open(&url).await.expect("open");
    let mut hints = listener.hints().expect("PostgreSQL has hints");
    // The listener connects in the background; its first hint says "look now".
    tokio::time::timeout(Duration::from_secs(10), hints.changed())
        .await
        .expect("listening")
        .expect("open");
    let seen = hints.borrow_and_update().plans;
    submitter.create_plan(plan()).await.expect("create");
    tokio::time::timeout(Duration::from_secs(5), hints.changed())
        .await
        .expect("a hint within 5 s")
        .expect("open");
    assert!(hints.borrow().plans > seen);
}

#[tokio::test]
async fn claims_from_many_connections_never_share_a_plan() {
    let url = weft_testpg::url();
    let first = PostgresStore::open(&url).await.expect("open");
    for _ in 0..200 {
        first.create_plan(plan()).await.expect("create");
    }
    let mut tasks = Vec::new();
    for n in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let store = PostgresStore::open(&url).await.expect("open");
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_plans(format!("node-{n}"), 7, vec!["noop@1".into()])
                    .await
                    .expect("claim");
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got);
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let unique: BTreeSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200, "every plan claimed");
    assert_eq!(unique.len(), 200, "no plan claimed twice");
}

/// TLS when the URL asks, with libpq's modes, against a server that takes TLS connections only
/// (a throwaway CA signed its certificate, for 127.0.0.1 alone); the password never shows.
#[tokio::test]
async fn tls_as_the_url_asks_and_no_password_in_any_error() {
    let (cluster, ca) = weft_testpg::Cluster::start_with_tls().expect("a TLS cluster");
    let admin = cluster.url_for(weft_testpg::USER, weft_testpg::PASSWORD, "postgres");
    weft_testpg::psql(
        &format!("{admin}?sslmode=require"),
        "CREATE ROLE tlsuser LOGIN SUPERUSER PASSWORD 'Sekr3t-pw'",
    );
    let url = cluster.url_for("tlsuser", "Sekr3t-pw", "postgres");
    let ca = ca.display().to_string();
    let open = |url: String| async move { PostgresStore::open(&url).await };

    // Trusting the CA, checking the name: a store that works.
    let verified = open(format!("{url}?sslmode=verify-full&sslrootcert={ca}"))
        .await
        .expect("verify-full with the CA");
    let p = plan();
    let id = p.id;
    verified.create_plan(p).await.expect("create over TLS");
    assert_eq!(verified.load_plan(id).await.expect("load").plan.id, id);
    // Encrypted without checking (libpq's require).
    open(format!("{url}?sslmode=require"))
        .await
        .expect("require takes any certificate");

    let refused = |r: weft_store::Result<PostgresStore>, why: &str| {
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains(why), "`{why}` in: {e}");
        assert!(!e.contains("Sekr3t-pw"), "no password in: {e}");
    };
    // No TLS: this server's pg_hba admits none.
    refused(open(url.clone()).await, "no encryption");
    // The system does not trust a throwaway CA.
    refused(
        open(format!("{url}?sslmode=verify-full")).await,
        "UnknownIssuer",
    );
    // The certificate is for 127.0.0.1, not `localhost`: verify-full refuses, verify-ca takes
    // it (it checks the chain only).
    let by_name = url.replace("127.0.0.1", "localhost");
    refused(
        open(format!("{by_name}?sslmode=verify-full&sslrootcert={ca}")).await,
        "not valid for name \"localhost\"",
    );
    open(format!("{by_name}?sslmode=verify-ca&sslrootcert={ca}"))
        .await
        .expect("verify-ca checks the chain, not the name");
    refused(
        open(format!("{url}?sslmode=sometimes")).await,
        "sslmode `sometimes`",
    );
}

#[tokio::test]
async fn a_throwaway_database_is_dropped_with_its_open_sessions() {
    let admin = weft_testpg::url();
    let name = format!("weft_throwaway_{}", std::process::id());
    let url = weft_store::postgres::create_database(&admin, &name)
        .await
        .expect("create");
    // A store still open there does not keep the database.
    let open = PostgresStore::open(&url).await.expect("open");
    weft_store::postgres::drop_database(&admin, &name)
        .await
        .expect("drop");
    let left = weft_testpg::psql(
        &admin,
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    );
    assert_eq!(left, "0");
    drop(open);
    // Dropping what is gone already is not an error; a name needing quotes is refused.
    weft_store::postgres::drop_database(&admin, &name)
        .await
        .expect("drop again");
    let refused = weft_store::postgres::drop_database(&admin, "x; DROP TABLE t")
        .await
        .expect_err("not a plain name");
    assert!(
        refused.to_string().contains("not a plain database name"),
        "{refused}"
    );
}
