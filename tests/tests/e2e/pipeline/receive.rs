//! Receive: routing, 404 and 405.

use anyhow::Result;
use sluice_tests::{TestHost, token};

/// An unknown path is a 404 problem with the request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_is_404_problem() -> Result<()> {
    let host = TestHost::start().await?;
    let reply = host.get("/demo/nothing-here", None).await?;
    reply.assert_problem(404);
    assert_eq!(reply.body["type"], "urn:sluice:problem:not-found");
    host.stop().await?;
    Ok(())
}

/// A known path with a method it does not serve is a 405 listing the allowed methods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_405_with_allow() -> Result<()> {
    let host = TestHost::start().await?;
    let t = token("alice", "demo", &[]);
    let reply = host
        .send(host.client.patch(host.url("/demo/todos")).bearer_auth(&t))
        .await?;
    reply.assert_problem(405);
    let allow = reply.header("allow");
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "allow: {allow}"
    );
    host.stop().await?;
    Ok(())
}

/// The health check answers without touching any function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_answers() -> Result<()> {
    let host = TestHost::start().await?;
    let reply = host.get("/_sluice/health", None).await?;
    assert_eq!(reply.status.as_u16(), 200);
    assert_eq!(reply.body["status"], "ok");
    host.stop().await?;
    Ok(())
}
