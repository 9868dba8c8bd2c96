//! Commits on different nodes run side by side, yet keep every promise of
//! one node's committer: a hot document counts exactly, and a storage quota
//! holds however the writes are spread.

use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::Method;
use serde_json::json;
use sluice_tests::{Reply, token};
use sqlx::Connection;
use tokio::task::JoinHandle;

use crate::documents::increment;
use crate::node::{Cluster, Node, guests};

/// Fifty increments of one document at once, spread over three nodes: each
/// is answered 200 (a stale read re-runs, taking turns across the cluster)
/// and the count is exactly fifty on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_increments_through_three_nodes_count_fifty() -> Result<()> {
    let cluster = Cluster::start(&[guests()], "").await?;
    let c = cluster.another("C", &[guests()], "")?;
    let nodes = [&cluster.a, &cluster.b, &c];
    let ed = &token("ed", "acme", &[]);
    let tasks = (0..50).map(|i| {
        let node = nodes[i % nodes.len()];
        async move { (node.name, increment(node, ed, "hot").await) }
    });
    for (name, reply) in futures_util::future::join_all(tasks).await {
        let reply = reply?;
        assert_eq!(reply.status, 200, "node {name}: {}", reply.body);
    }
    for node in nodes {
        let read = node.get("/acme/counters/hot", None).await?;
        assert_eq!(
            read.body["count"], 50,
            "node {}: an increment was lost or counted twice",
            node.name
        );
    }
    Ok(())
}

/// While one document's row is locked by someone else, node A's commit
/// that writes it waits, and node B commits a write of another document of
/// the same tenant meanwhile: no cluster-wide lock orders the two. Then A's
/// commit goes through, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_waiting_on_one_node_does_not_hold_up_another() -> Result<()> {
    let cluster = Cluster::start(&[guests()], "").await?;
    let (a, b) = (&cluster.a, &cluster.b);
    let ed = token("ed", "acme", &[]);
    for name in ["blocked", "free"] {
        let made = increment(a, &ed, name).await?;
        assert_eq!(made.status, 200, "{}", made.body);
    }

    let lock = RowLock::take(&cluster.database, "counters", "blocked").await?;
    let path = "/acme/counters/blocked";
    let waiting = spawn(a.request(Method::POST, path).bearer_auth(&ed));
    // Until A's batch is under way and waiting for the row.
    lock.until_waiting("transactionid", "A's commit waiting for the locked row")
        .await?;

    let other = tokio::time::timeout(Duration::from_secs(20), increment(b, &ed, "free"))
        .await
        .context("node B's write waited for node A's commit")??;
    assert_eq!(other.status, 200, "{}", other.body);
    assert_eq!(other.body["count"], 2);
    assert!(
        !waiting.is_finished(),
        "A's write finished past a locked row"
    );

    lock.release().await?;
    let done = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .context("A's write did not finish once the row was free")???;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["count"], 2);
    let read = b.get("/acme/counters/blocked", None).await?;
    assert_eq!(read.body["count"], 2, "counted once");
    Ok(())
}

/// A storage quota holds across nodes: while node A's commit that takes
/// the tenant to 950 of its 1,000 bytes is held up (a row it writes is
/// locked), node C's commit adding 100 more waits for it instead of
/// checking the usage A has not yet added to, and is then refused. The
/// usage the committers kept equals what the documents hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_quota_holds_across_nodes() -> Result<()> {
    let cluster = Cluster::start(&[guests()], "").await?;
    let key = cluster.operator_key()?;
    let a = &cluster.a;
    let quota = sluice_tests::send(
        a.admin(Method::PUT, "/v1/tenants/acme/quota", &key)
            .json(&json!({ "max_stored_bytes": 1000 })),
    )
    .await?;
    assert_eq!(quota.status, 200, "{}", quota.body);
    // A node started now reads the quota at start; A set it itself.
    let c = cluster.another("C", &[guests()], "")?;
    let alice = token("alice", "acme", &[]);
    // {"key":"<key>"} under each 20-byte key: 50 bytes each.
    let keys = |range: std::ops::Range<u32>| -> Vec<String> {
        range.map(|i| format!("key-{i:016}")).collect()
    };
    // The probe also lists the prefix: none, so it reads nothing A writes.
    let put = |keys: Vec<String>| json!({ "put": keys, "prefix": "none-", "limit": 1 });
    let first = a
        .post("/acme/probe/documents", &alice, &put(keys(0..10)))
        .await?;
    assert_eq!(first.status, 200, "{}", first.body);

    let lock = RowLock::take(&cluster.database, "probe", "key-0000000000000000").await?;

    // A rewrites the locked key (no growth) and adds nine: 950 bytes.
    let growing = spawn_post(
        a,
        &alice,
        put(keys(0..1).into_iter().chain(keys(10..19)).collect()),
    );
    lock.until_waiting("transactionid", "A's commit waiting for the locked row")
        .await?;
    // C adds two: 1,050 bytes if it did not wait for A.
    let late = spawn_post(&c, &alice, put(keys(19..21)));
    let what = "C's commit waiting for the tenant's lock, which A's holds";
    lock.until_waiting("advisory", what).await?;
    lock.release().await?;

    let growing = growing.await??;
    assert_eq!(growing.status, 200, "{}", growing.body);
    let late = late.await??;
    late.assert_problem(507);

    let mut db = sqlx::AnyConnection::connect(&cluster.database).await?;
    let stored: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(octet_length(key) + octet_length(value)), 0) AS BIGINT) \
         FROM documents WHERE tenant = 'acme' AND value IS NOT NULL",
    )
    .fetch_one(&mut db)
    .await?;
    let usage: i64 = sqlx::query_scalar(
        "SELECT CAST(SUM(stored_bytes) AS BIGINT) FROM tenant_usage WHERE tenant = 'acme'",
    )
    .fetch_one(&mut db)
    .await?;
    assert_eq!((stored, usage), (950, 950));
    Ok(())
}

/// Posts `body` to the probe through `node` on a task of its own.
fn spawn_post(node: &Node, token: &str, body: serde_json::Value) -> JoinHandle<Result<Reply>> {
    let path = "/acme/probe/documents";
    spawn(
        node.request(Method::POST, path)
            .bearer_auth(token)
            .json(&body),
    )
}

/// Sends `request` on a task of its own.
fn spawn(request: reqwest::RequestBuilder) -> JoinHandle<Result<Reply>> {
    tokio::spawn(sluice_tests::send(request))
}

/// The advisory lock key the host takes for a document: FNV-1a 64 over
/// `d`, then each part after a NUL (`host/src/store/locks.rs`).
fn document_lock(tenant: &str, collection: &str, key: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(b"d");
    for part in [tenant, collection, key] {
        eat(&[0]);
        eat(part.as_bytes());
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// A deadlock PostgreSQL breaks by aborting a batch is retried by the
/// host: the client gets its 200, counted once. The test makes one: it
/// locks a counter's row, waits until node A's batch holds the counter's
/// document lock and waits for the row, then asks for that document lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_aborted_by_a_deadlock_runs_again() -> Result<()> {
    let cluster = Cluster::start(&[guests()], "").await?;
    let a = &cluster.a;
    let ed = token("ed", "acme", &[]);
    let made = increment(a, &ed, "deadlock").await?;
    assert_eq!(made.status, 200, "{}", made.body);

    let mut lock = RowLock::take(&cluster.database, "counters", "deadlock").await?;
    let path = "/acme/counters/deadlock";
    let waiting = spawn(a.request(Method::POST, path).bearer_auth(&ed));
    lock.until_waiting("transactionid", "A's batch waiting for the locked row")
        .await?;
    // A circle: A's batch waits for this row, this session for A's lock.
    // PostgreSQL breaks it after deadlock_timeout (1 s) by aborting the
    // batch, whose wait began first; then this session has the lock.
    let key = document_lock("acme", "counters", "deadlock");
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut lock.session)
        .await?;
    lock.release().await?;

    let done = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .context("A's write did not finish")???;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["count"], 2, "counted once");
    let log = a.log_tail();
    assert!(
        log.contains("running it again"),
        "no retry in node A's log:\n{log}"
    );
    Ok(())
}

/// A session of the test's own holding one of tenant acme's document rows
/// locked (`FOR UPDATE`), and a pool to watch who waits for what.
struct RowLock {
    session: sqlx::AnyConnection,
    watcher: sqlx::AnyPool,
}

impl RowLock {
    /// Locks the row of `collection/key` until [`RowLock::release`].
    async fn take(database: &str, collection: &str, key: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let mut session = sqlx::AnyConnection::connect(database).await?;
        sqlx::raw_sql("BEGIN").execute(&mut session).await?;
        let locked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM documents WHERE tenant = 'acme' \
             AND collection = $1 AND key = $2 FOR UPDATE) AS r",
        )
        .bind(collection)
        .bind(key)
        .fetch_one(&mut session)
        .await?;
        anyhow::ensure!(locked == 1, "no document {collection}/{key} to lock");
        let watcher = sqlx::AnyPool::connect(database).await?;
        Ok(Self { session, watcher })
    }

    /// Waits until some session waits for a lock of `locktype`.
    async fn until_waiting(&self, locktype: &'static str, what: &str) -> Result<()> {
        let watcher = &self.watcher;
        sluice_tests::eventually(what, || async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = $1",
            )
            .bind(locktype)
            .fetch_one(watcher)
            .await?;
            Ok((n > 0).then_some(()))
        })
        .await
    }

    /// Ends the session's transaction: the row is free.
    async fn release(mut self) -> Result<()> {
        sqlx::raw_sql("ROLLBACK").execute(&mut self.session).await?;
        Ok(())
    }
}

/// An `Idempotency-Key` holds across the cluster: a retry on another node
/// gets the first answer, and retries sent to both nodes at once commit once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_commits_once_across_nodes() -> Result<()> {
    let examples = sluice_tests::root().join("guest-examples");
    let cluster = Cluster::start(std::slice::from_ref(&examples), "").await?;
    let (a, b) = (&cluster.a, &cluster.b);
    let fay = token("fay", "demo", &[]);
    let create = |node: &Node, key: &str| {
        let req = node
            .request(Method::POST, "/demo/todos")
            .bearer_auth(&fay)
            .header("idempotency-key", key)
            .json(&json!({ "title": "once" }));
        sluice_tests::send(req)
    };
    let first = create(a, "cluster-1").await?;
    assert_eq!(first.status, 201, "{}", first.body);
    let retried = create(b, "cluster-1").await?;
    assert_eq!(retried.status, 201, "{}", retried.body);
    assert_eq!(retried.header("idempotent-replayed"), "true");
    assert_eq!(retried.body, first.body);

    let burst = (0..8).map(|i| create(if i % 2 == 0 { a } else { b }, "cluster-2"));
    let replies: Vec<Reply> = futures_util::future::try_join_all(burst).await?;
    let ids: Vec<_> = replies.iter().map(|r| r.body["id"].clone()).collect();
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 201));
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "answers differ: {ids:?}"
    );
    let list = a.get("/demo/todos", Some(&fay)).await?;
    let todos = list.body["todos"].as_array().map_or(0, Vec::len);
    assert_eq!(todos, 2, "one todo per key: {}", list.body);
    Ok(())
}
