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

/// A function that runs past its deadline is stopped with a 504; the host
/// keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_function_is_stopped_with_504() -> Result<()> {
    let host =
        TestHost::start_with(tempfile::TempDir::new()?, |c| c.runtime.timeout_ms = 300).await?;
    let t = token("ed", "acme", &[]);
    let reply = host
        .send(
            host.client
                .post(host.url("/acme/probe/spin"))
                .bearer_auth(&t),
        )
        .await?;
    reply.assert_problem(504);
    assert_eq!(reply.body["type"], "urn:sluice:problem:function-timeout");
    let after = host.get("/acme/counters/after-spin", None).await?;
    assert_eq!(after.status.as_u16(), 200);
    host.stop().await?;
    Ok(())
}
