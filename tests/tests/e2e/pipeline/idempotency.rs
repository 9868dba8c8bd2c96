//! `Idempotency-Key` on a route with `idempotency = true` (the todo
//! example's create): one commit however often the client retries, even
//! at once; the first answer replayed and marked; the same key with
//! another body refused; keys kept apart by caller; answers forgotten
//! after the window, by the lookup and by the garbage collector.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_tests::{Reply, TestHost, count, token};

async fn create(host: &TestHost, who: &str, key: Option<&str>, title: &str) -> Result<Reply> {
    let mut req = host
        .client
        .post(host.url("/demo/todos"))
        .bearer_auth(who)
        .json(&json!({ "title": title }));
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    host.send(req).await
}

/// The caller's todos committed, counted in the database.
async fn todos_of(host: &TestHost, subject: &str) -> Result<i64> {
    let prefix = format!("{subject}/%");
    host.count(
        "SELECT count(*) FROM documents WHERE tenant = 'demo' AND collection = 'todos' \
         AND key LIKE $1 AND value IS NOT NULL",
        &[&prefix],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_commits_once_and_answers_the_same() -> Result<()> {
    let host = TestHost::start().await?;
    let ann = token("ann", "demo", &[]);
    let first = create(&host, &ann, Some("order-7f3a"), "buy milk").await?;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), "");
    let again = create(&host, &ann, Some("order-7f3a"), "buy milk").await?;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body, first.body, "the first answer, replayed");
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_ne!(again.request_id(), first.request_id());
    assert_eq!(again.header("content-type"), first.header("content-type"));
    assert_eq!(todos_of(&host, "ann").await?, 1);

    // The same key with another body is another request: refused.
    let other = create(&host, &ann, Some("order-7f3a"), "buy bread").await?;
    other.assert_problem(422);
    assert!(
        other.body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("idempotency-key-reused"))
    );
    // Keys are the caller's own: Bob's order-7f3a is his first.
    let bob = token("bob", "demo", &[]);
    let bobs = create(&host, &bob, Some("order-7f3a"), "buy milk").await?;
    assert_eq!(bobs.status, 201);
    assert_eq!(bobs.header("idempotent-replayed"), "");
    assert_ne!(bobs.body["id"], first.body["id"]);
    // No key: every request is its own.
    create(&host, &ann, None, "no key").await?;
    create(&host, &ann, None, "no key").await?;
    assert_eq!(todos_of(&host, "ann").await?, 3);
    // Not a key: too long, or not visible ASCII.
    let long = "k".repeat(256);
    create(&host, &ann, Some(&long), "x")
        .await?
        .assert_problem(400);
    create(&host, &ann, Some("two words"), "x")
        .await?
        .assert_problem(400);

    // Each outcome is on record: the replay ran no function.
    let data = host.stop().await?;
    let replayed = count(
        data.path(),
        "SELECT count(*) FROM invocations WHERE outcome = $1",
        &["replayed"],
    )
    .await?;
    assert_eq!(replayed, 1);
    let reused = count(
        data.path(),
        "SELECT count(*) FROM invocations WHERE outcome = $1 AND status = 422",
        &["key-reused"],
    )
    .await?;
    assert_eq!(reused, 1);
    Ok(())
}

/// Eight retries in flight at once: one commit, one answer for all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_in_flight_at_once_commit_once() -> Result<()> {
    let host = TestHost::start().await?;
    let cy = token("cy", "demo", &[]);
    let sends = (0..8).map(|_| create(&host, &cy, Some("burst-1"), "once"));
    let replies = futures_util::future::try_join_all(sends).await?;
    let ids: Vec<&Value> = replies.iter().map(|r| &r.body["id"]).collect();
    for reply in &replies {
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "answers differ: {ids:?}"
    );
    let replayed = replies
        .iter()
        .filter(|r| r.header("idempotent-replayed") == "true")
        .count();
    assert_eq!(replayed, 7, "all but the first are replays");
    assert_eq!(todos_of(&host, "cy").await?, 1, "exactly one commit");
    Ok(())
}

/// Past the window a key is new again, and the collector drops the old
/// answer, giving its bytes back to the tenant's usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_forgotten_after_the_window() -> Result<()> {
    let data = tempfile::TempDir::new()?;
    let host = TestHost::start_with(data, |c| c.http.idempotency_window_secs = 1).await?;
    let di = token("di", "demo", &[]);
    let first = create(&host, &di, Some("k-1"), "first").await?;
    assert_eq!(first.status, 201);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = create(&host, &di, Some("k-1"), "first").await?;
    assert_eq!(later.status, 201);
    assert_eq!(later.header("idempotent-replayed"), "");
    assert_ne!(later.body["id"], first.body["id"]);
    assert_eq!(todos_of(&host, "di").await?, 2);

    let answers = "SELECT count(*) FROM documents WHERE tenant = 'demo' AND collection = $1";
    assert_eq!(host.count(answers, &["$idempotency"]).await?, 1);
    let usage = "SELECT CAST(SUM(stored_bytes) AS BIGINT) FROM tenant_usage WHERE tenant = $1";
    let pool = host.db().await?;
    let before: i64 = sqlx::query_scalar(usage)
        .bind("demo")
        .fetch_one(&pool)
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let data = host.stop().await?;
    // The collector the host runs every minute, run now on its store.
    let config = sluice_tests::config(data.path())?;
    let store = sluice_host::store::Store::open(
        &config.database_url(),
        sluice_host::store::Files::open(&config.blobs, &config.blobs_dir())?,
        &config.database,
        &config.queue,
        Default::default(),
    )
    .await
    .context("opening the store")?;
    store.collect_garbage(Duration::from_secs(1)).await?;
    store.close().await;
    assert_eq!(
        sluice_tests::count(data.path(), answers, &["$idempotency"]).await?,
        0
    );
    let pool = sluice_tests::db(data.path()).await?;
    let after: i64 = sqlx::query_scalar(usage)
        .bind("demo")
        .fetch_one(&pool)
        .await?;
    assert!(after < before, "usage {before} -> {after}");
    Ok(())
}
