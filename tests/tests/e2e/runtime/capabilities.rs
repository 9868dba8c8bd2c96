//! The `documents` and `queue` imports as a function sees them.

use anyhow::Result;
use serde_json::{Value, json};
use sluice_tests::{TestHost, token};

/// A function's reads see its own staged writes and deletes; a listing
/// merges them with committed documents, page by page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_listings_see_staged_writes() -> Result<()> {
    let host = TestHost::start().await?;
    let t = token("ed", "acme", &[]);
    let first = host
        .post(
            "/acme/probe/documents",
            Some(&t),
            &json!({"put": ["a1", "a3", "a5", "b1"], "prefix": "a", "limit": 10}),
        )
        .await?;
    assert_eq!(first.status.as_u16(), 200, "body: {}", first.body);
    assert_eq!(first.body["pages"], json!([["a1", "a3", "a5"]]));

    let second = host
        .post(
            "/acme/probe/documents",
            Some(&t),
            &json!({
                "put": ["a2"],
                "delete": ["a3", "zz"],
                "get": ["a2", "a3", "a1"],
                "prefix": "a",
                "limit": 2
            }),
        )
        .await?;
    assert_eq!(second.status.as_u16(), 200, "body: {}", second.body);
    assert_eq!(second.body["deleted"], json!([true, false]));
    assert_eq!(
        second.body["got"],
        json!([{"key": "a2", "version": 0}, null, {"key": "a1", "version": 1}])
    );
    assert_eq!(second.body["pages"], json!([["a1", "a2"], ["a5"]]));

    // Committed: a2 created, a3 a tombstone at version 2, b1 untouched,
    // and no row for zz, which never existed.
    let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT key, value, version FROM documents WHERE tenant = 'acme' AND collection = 'probe' ORDER BY key",
    )
    .fetch_all(&host.db().await?)
    .await?;
    let summary: Vec<(String, bool, i64)> = rows
        .into_iter()
        .map(|(k, v, n)| (k, v.is_some(), n))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a1".into(), true, 1),
            ("a2".into(), true, 1),
            ("a3".into(), false, 2),
            ("a5".into(), true, 1),
            ("b1".into(), true, 1),
        ]
    );
    host.stop().await?;
    Ok(())
}

/// A key the host refuses is an error the function handles, not a trap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_key_is_a_function_error() -> Result<()> {
    let host = TestHost::start().await?;
    let reply = host
        .post(
            "/acme/probe/documents",
            Some(&token("ed", "acme", &[])),
            &json!({"put": [""], "prefix": "", "limit": 1}),
        )
        .await?;
    reply.assert_problem(500);
    assert_eq!(reply.body["type"], "urn:sluice:problem:function-error");
    host.stop().await?;
    Ok(())
}

/// A delayed message is stored with its delivery time; a second send with
/// the same idempotency key to the same topic is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_options_are_committed() -> Result<()> {
    let host = TestHost::start().await?;
    let t = token("ed", "acme", &[]);
    let send = |body: Value| {
        let host = &host;
        let t = &t;
        async move { host.post("/acme/probe/send", Some(t), &body).await }
    };
    for _ in 0..2 {
        let reply = send(json!({"topic": "once", "idempotency_key": "k1"})).await?;
        assert_eq!(reply.status.as_u16(), 204, "body: {}", reply.body);
    }
    let delayed = send(json!({"topic": "later", "delay_ms": 60000})).await?;
    assert_eq!(delayed.status.as_u16(), 204);

    let db = host.db().await?;
    let once: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE tenant = 'acme' AND topic = 'once'")
            .fetch_one(&db)
            .await?;
    assert_eq!(once, 1);
    let delay: i64 = sqlx::query_scalar(
        "SELECT available_at - created_at FROM outbox WHERE tenant = 'acme' AND topic = 'later'",
    )
    .fetch_one(&db)
    .await?;
    assert_eq!(delay, 60000);
    host.stop().await?;
    Ok(())
}
