//! Persist: one transaction or nothing; no lost updates; data survives restarts.

use anyhow::Result;
use serde_json::json;
use sluice_tests::{TestHost, count, token};

const SCRATCH_DOCS: &str =
    "SELECT count(*) FROM documents WHERE tenant = 'acme' AND collection = 'scratch' AND key = ?";
const SCRATCH_OUTBOX: &str = "SELECT count(*) FROM outbox WHERE tenant = 'acme' AND topic = 'scratch-events' AND request_id = ?";

/// A function that stages a write and a send and then returns an error
/// commits neither; its invocation is recorded as a guest error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_error_after_staging_commits_nothing() -> Result<()> {
    let host = TestHost::start().await?;
    let reply = host
        .post(
            "/acme/stage-then-fail",
            Some(&token("ed", "acme", &[])),
            &json!({}),
        )
        .await?;
    reply.assert_problem(409);
    assert_eq!(reply.body["detail"], "staged then refused");
    let id = reply.request_id().to_owned();
    let data = host.stop().await?;
    assert_eq!(count(data.path(), SCRATCH_DOCS, &id).await?, 0);
    assert_eq!(count(data.path(), SCRATCH_OUTBOX, &id).await?, 0);
    let recorded = count(
        data.path(),
        "SELECT count(*) FROM invocations WHERE request_id = ? AND outcome = 'guest-error' AND status = 409",
        &id,
    )
    .await?;
    assert_eq!(recorded, 1);
    Ok(())
}

/// A function that traps (panics) after staging commits nothing and gets a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_after_staging_commits_nothing() -> Result<()> {
    let host = TestHost::start().await?;
    let reply = host
        .post(
            "/acme/stage-then-trap",
            Some(&token("ed", "acme", &[])),
            &json!({}),
        )
        .await?;
    reply.assert_problem(500);
    assert_eq!(reply.body["type"], "urn:sluice:problem:function-trap");
    let id = reply.request_id().to_owned();
    // The host keeps serving after a trap.
    let after = host.get("/acme/counters/after-trap", None).await?;
    assert_eq!(after.status.as_u16(), 200);
    let data = host.stop().await?;
    assert_eq!(count(data.path(), SCRATCH_DOCS, &id).await?, 0);
    assert_eq!(count(data.path(), SCRATCH_OUTBOX, &id).await?, 0);
    let recorded = count(
        data.path(),
        "SELECT count(*) FROM invocations WHERE request_id = ? AND outcome = 'trap'",
        &id,
    )
    .await?;
    assert_eq!(recorded, 1);
    Ok(())
}

/// 50 concurrent clients incrementing one counter end with exactly 50 more:
/// conflicting commits are re-run, never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_lose_nothing() -> Result<()> {
    let host = TestHost::start().await?;
    let t = token("ed", "acme", &[]);
    let before = host.get("/acme/counters/hot", None).await?;
    assert_eq!(before.body["count"], 0);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = host.client.clone();
        let url = host.url("/acme/counters/hot");
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(t)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for task in tasks {
        assert_eq!(task.await??, 200);
    }
    let after = host.get("/acme/counters/hot", None).await?;
    assert_eq!(after.body["count"], 50, "body: {}", after.body);
    let version: i64 = sqlx::query_scalar(
        "SELECT version FROM documents WHERE tenant = 'acme' AND collection = 'counters' AND key = 'hot'",
    )
    .fetch_one(&host.db().await?)
    .await?;
    assert_eq!(version, 50);
    host.stop().await?;
    Ok(())
}

/// Committed data survives a restart of the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_committed_data() -> Result<()> {
    let host = TestHost::start().await?;
    let t = token("alice", "demo", &[]);
    let created = host
        .post(
            "/demo/todos",
            Some(&t),
            &json!({"title": "survive a restart"}),
        )
        .await?;
    assert_eq!(created.status.as_u16(), 201, "body: {}", created.body);
    let id = created.body["id"].as_str().unwrap_or_default().to_owned();

    let host = host.restart().await?;
    let fetched = host.get(&format!("/demo/todos/{id}"), Some(&t)).await?;
    assert_eq!(fetched.status.as_u16(), 200, "body: {}", fetched.body);
    assert_eq!(fetched.body["title"], "survive a restart");
    host.stop().await?;
    Ok(())
}
