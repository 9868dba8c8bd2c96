//! Process: what the function sees of a request.

use anyhow::Result;
use serde_json::json;
use sluice_tests::{TestHost, token};

/// The function gets route params, query, headers without credentials or
/// hop-by-hop headers, the validated body, the verified claims and the
/// request id that the response carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_sees_the_checked_request() -> Result<()> {
    let host = TestHost::start().await?;
    let t = token("ed", "acme", &["editor", "viewer"]);
    let reply = host
        .send(
            host.client
                .post(host.url("/acme/echo/first?x=1&y=two%20words"))
                .bearer_auth(&t)
                .header("content-type", "application/json")
                .header("x-custom", "kept")
                .header("te", "trailers")
                .header("connection", "x-drop-me")
                .header("x-drop-me", "gone")
                .body(json!({"name": "Ed", "age": 42}).to_string()),
        )
        .await?;
    assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.body);
    let seen = &reply.body;
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/acme/echo/first");
    assert_eq!(seen["params"]["a"], "first");
    assert_eq!(seen["query"]["y"], "two words");
    assert_eq!(seen["body"], json!({"name": "Ed", "age": 42}));
    assert_eq!(seen["claims"]["subject"], "ed");
    assert_eq!(seen["claims"]["tenant"], "acme");
    assert_eq!(seen["claims"]["roles"], json!(["editor", "viewer"]));
    assert_eq!(seen["claims"]["all"]["sub"], "ed");
    assert_eq!(seen["request_id"], reply.request_id());
    let headers = seen["headers"].as_object().cloned().unwrap_or_default();
    assert_eq!(headers.get("x-custom"), Some(&json!("kept")));
    for hidden in ["authorization", "te", "connection", "x-drop-me"] {
        assert!(
            !headers.contains_key(hidden),
            "{hidden} leaked: {headers:?}"
        );
    }
    host.stop().await?;
    Ok(())
}

/// A public route gives the function no claims, even when a token is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_route_has_no_claims() -> Result<()> {
    let host = TestHost::start().await?;
    let reply = host
        .get("/acme/echo/pub", Some(&token("ed", "acme", &[])))
        .await?;
    assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.body);
    assert!(reply.body["claims"].is_null());
    host.stop().await?;
    Ok(())
}

/// Functions that run past their deadline are stopped with a 504, and while
/// they spin, more of them than there are worker threads, other requests are
/// still served: a busy guest yields its thread at every epoch tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_functions_are_stopped_and_do_not_block_others() -> Result<()> {
    let host = TestHost::start_with(tempfile::TempDir::new()?, |c| {
        c.limits.default.timeout_ms = 2000
    })
    .await?;
    let t = token("ed", "acme", &[]);
    let mut spins = Vec::new();
    for _ in 0..3 {
        let req = host
            .client
            .post(host.url("/acme/probe/spin"))
            .bearer_auth(&t);
        spins.push(tokio::spawn(async move {
            let reply = req.send().await;
            (
                reply.map(|r| r.status().as_u16()),
                std::time::Instant::now(),
            )
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let other = host.get("/acme/counters/while-spinning", None).await?;
    let other_done = std::time::Instant::now();
    assert_eq!(other.status.as_u16(), 200);
    for spin in spins {
        let (status, done) = spin.await?;
        assert_eq!(status?, 504);
        assert!(
            other_done < done,
            "the other request waited for the spinning ones"
        );
    }
    let reply = host
        .send(
            host.client
                .post(host.url("/acme/probe/spin"))
                .bearer_auth(&t),
        )
        .await?;
    reply.assert_problem(504);
    assert_eq!(reply.body["type"], "urn:sluice:problem:limit:timeout_ms");
    host.stop().await?;
    Ok(())
}
