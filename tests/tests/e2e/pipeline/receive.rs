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

/// A URI over 8 KiB is 414, a header line over 16 KiB or a header section
/// over 32 KiB is 431: problem+json with the request id, well below
/// hyper's own buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_uri_and_headers_are_refused_as_problems() -> Result<()> {
    let host = TestHost::start().await?;
    let t = token("alice", "demo", &[]);
    let long = "a".repeat(20 * 1024);
    for path in [
        format!("/demo/todos/{long}"),
        format!("/demo/todos?q={long}"),
    ] {
        let reply = host.get(&path, Some(&t)).await?;
        reply.assert_problem(414);
    }
    let one_big = host.client.get(host.url("/demo/todos")).bearer_auth(&t);
    let reply = host
        .send(one_big.header("x-big", "v".repeat(64 * 1024)))
        .await?;
    reply.assert_problem(431);
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("one header line")
    );
    let mut many = host.client.get(host.url("/demo/todos")).bearer_auth(&t);
    for i in 0..50 {
        many = many.header(format!("x-h{i}"), "v".repeat(4 * 1024));
    }
    let reply = host.send(many).await?;
    reply.assert_problem(431);
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("header section")
    );
    // Under the limits the same route answers.
    assert_eq!(
        host.get("/demo/todos", Some(&t)).await?.status.as_u16(),
        200
    );
    host.stop().await?;
    Ok(())
}

/// Any `transfer-encoding` but exactly one `chunked` is 400 problem+json,
/// and the connection is closed after it; the function never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_codings_other_than_chunked_are_refused() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = TestHost::start().await?;
    let t = token("alice", "acme", &[]);
    let addr = host.base.trim_start_matches("http://").to_owned();
    for coding in ["chunked, chunked", "identity, chunked", "gzip, chunked"] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        let request = format!(
            "POST /acme/counters/te HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {t}\r\n\
             transfer-encoding: {coding}\r\n\r\n0\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        // Read to the end: the host closes the connection after answering.
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut answer),
        )
        .await??;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{coding}: {answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(answer.contains("x-request-id"), "{answer}");
        assert!(answer.contains("bad-transfer-encoding"), "{answer}");
    }
    let data = host.stop().await?;
    let sql = "SELECT count(*) FROM invocations WHERE route LIKE $1";
    assert_eq!(
        sluice_tests::count(data.path(), sql, &["%counters%"]).await?,
        0
    );
    Ok(())
}
