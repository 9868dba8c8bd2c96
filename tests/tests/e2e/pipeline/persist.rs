//! Persist: one transaction or nothing; no lost updates; data survives restarts.

use anyhow::Result;
use serde_json::json;
use sluice_tests::{Reply, TestHost, count, token};

/// Posts to a test guest that stages a document write and a queue send and
/// then fails; checks the status and that only the invocation record, with
/// `outcome`, was committed.
async fn staged_then_failed(path: &str, status: u16, outcome: &str) -> Result<Reply> {
    let host = TestHost::start().await?;
    let reply = host
        .post(path, Some(&token("ed", "acme", &[])), &json!({}))
        .await?;
    reply.assert_problem(status);
    // The host keeps serving after a failed invocation.
    let after = host.get("/acme/counters/after", None).await?;
    assert_eq!(after.status.as_u16(), 200);

    let data = host.stop().await?;
    let id = reply.request_id();
    let docs = "SELECT count(*) FROM documents WHERE tenant = 'acme' AND collection = 'scratch' AND key = $1";
    assert_eq!(count(data.path(), docs, &[id]).await?, 0);
    let outbox = "SELECT count(*) FROM outbox WHERE topic = 'scratch-events' AND request_id = $1";
    assert_eq!(count(data.path(), outbox, &[id]).await?, 0);
    // Binds are text, which PostgreSQL does not compare with a number.
    let record = "SELECT count(*) FROM invocations WHERE request_id = $1 AND outcome = $2 AND status = CAST($3 AS BIGINT)";
    let recorded = count(data.path(), record, &[id, outcome, &status.to_string()]).await?;
    assert_eq!(recorded, 1);
    Ok(reply)
}

/// A function that stages a write and a send and then returns an error
/// commits neither; its invocation is recorded as a guest error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_error_after_staging_commits_nothing() -> Result<()> {
    let reply = staged_then_failed("/acme/stage-then-fail", 409, "guest-error").await?;
    assert_eq!(reply.body["detail"], "staged then refused");
    Ok(())
}

/// A function that traps (panics) after staging commits nothing and gets a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_after_staging_commits_nothing() -> Result<()> {
    let reply = staged_then_failed("/acme/stage-then-trap", 500, "trap").await?;
    assert_eq!(reply.body["type"], "urn:sluice:problem:function-trap");
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

/// A response the host cannot send (an invalid status or header) is a 502,
/// and the writes staged before it are not committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_response_commits_nothing() -> Result<()> {
    let host = TestHost::start().await?;
    let t = token("ed", "acme", &[]);
    let bad_status = host
        .post("/acme/probe/respond", Some(&t), &json!({"status": 1000}))
        .await?;
    bad_status.assert_problem(502);
    let bad_header = host
        .post(
            "/acme/probe/respond",
            Some(&t),
            &json!({"status": 200, "header": ["x-bad", "line\nbreak"]}),
        )
        .await?;
    bad_header.assert_problem(502);
    let good = host
        .post(
            "/acme/probe/respond",
            Some(&t),
            &json!({"status": 202, "header": ["x-probe", "yes"]}),
        )
        .await?;
    assert_eq!(good.status.as_u16(), 202);
    assert_eq!(good.header("x-probe"), "yes");

    let docs = "SELECT count(*) FROM documents WHERE collection = 'probe' AND key = $1";
    assert_eq!(host.count(docs, &[bad_status.request_id()]).await?, 0);
    assert_eq!(host.count(docs, &[bad_header.request_id()]).await?, 0);
    assert_eq!(host.count(docs, &[good.request_id()]).await?, 1);
    host.stop().await?;
    Ok(())
}

/// Every field of a function's answer is checked before the commit, as a
/// class: a status outside 200-599 (1xx interim answers, 101 included, and
/// 600-999), too many headers, too many header bytes, a body over
/// `response_bytes` — each a 502 problem with the request id, recorded as
/// an invalid response or a limit, and nothing staged is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_of_an_answer_is_checked_before_the_commit() -> Result<()> {
    let host = TestHost::start().await?;
    let t = token("ed", "acme", &[]);
    let many: Vec<(String, String)> = (0..101).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let cases = [
        (json!({"status": 100}), "invalid-response"),
        (json!({"status": 101}), "invalid-response"),
        (json!({"status": 103}), "invalid-response"),
        (json!({"status": 199}), "invalid-response"),
        (json!({"status": 600}), "invalid-response"),
        (json!({"status": 999}), "invalid-response"),
        (json!({"status": 200, "headers": many}), "invalid-response"),
        (
            json!({"status": 200, "pad_header_bytes": 65 * 1024}),
            "invalid-response",
        ),
        (
            json!({"status": 200, "header": ["bad name", "v"]}),
            "invalid-response",
        ),
        (
            json!({"status": 200, "body_bytes": 9 * 1024 * 1024}),
            "limit",
        ),
    ];
    let mut refused = Vec::new();
    for (body, outcome) in cases {
        let reply = host.post("/acme/probe/respond", Some(&t), &body).await?;
        reply.assert_problem(502);
        refused.push((reply.request_id().to_owned(), outcome, body));
    }
    for status in [200, 299, 404, 599] {
        let reply = host
            .post("/acme/probe/respond", Some(&t), &json!({"status": status}))
            .await?;
        assert_eq!(reply.status.as_u16(), status);
    }
    let data = host.stop().await?;
    let docs = "SELECT count(*) FROM documents WHERE collection = 'probe' AND key = $1";
    let records = "SELECT count(*) FROM invocations WHERE request_id = $1 AND outcome = $2";
    for (id, outcome, body) in &refused {
        assert_eq!(count(data.path(), docs, &[id]).await?, 0, "{body}");
        assert_eq!(
            count(data.path(), records, &[id, outcome]).await?,
            1,
            "{body}"
        );
    }
    Ok(())
}

/// The record of an invocation that staged nothing is held back to share a
/// later transaction, but is committed while the host runs, with no flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_read_only_invocations_are_committed() -> Result<()> {
    let host = TestHost::start().await?;
    let reply = host.get("/acme/counters/recorded", None).await?;
    assert_eq!(reply.status.as_u16(), 200);
    let id = reply.request_id().to_owned();
    let sql = "SELECT count(*) FROM invocations WHERE request_id = $1 AND outcome = 'ok'";
    tokio::time::timeout(sluice_tests::HANG_GUARD, async {
        while host.count(sql, &[&id]).await.unwrap_or(0) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await?;
    host.stop().await?;
    Ok(())
}
