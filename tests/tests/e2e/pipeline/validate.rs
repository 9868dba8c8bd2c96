//! Validate: content type, size, JSON syntax, schema; the function is never
//! called on a refused body.

use anyhow::Result;
use serde_json::json;
use sluice_tests::{TestHost, count, token};

/// Every refusal has its status, and none of them reaches the function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_refused_before_the_function() -> Result<()> {
    let host = TestHost::start().await?;
    let t = token("ed", "acme", &["editor"]);
    let url = host.url("/acme/echo/v");
    let mut refused = Vec::new();

    let malformed = host
        .send(
            host.client
                .post(&url)
                .bearer_auth(&t)
                .header("content-type", "application/json")
                .body("{\"name\": "),
        )
        .await?;
    malformed.assert_problem(400);
    refused.push(malformed);

    let schema = host
        .post(
            "/acme/echo/v",
            Some(&t),
            &json!({"name": "a name that is far too long", "age": -1}),
        )
        .await?;
    schema.assert_problem(422);
    let mut pointers: Vec<&str> = schema.body["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["pointer"].as_str()).collect())
        .unwrap_or_default();
    pointers.sort_unstable();
    assert_eq!(pointers, vec!["/age", "/name"], "body: {}", schema.body);
    refused.push(schema);

    let missing = host
        .post("/acme/echo/v", Some(&t), &json!({"age": 3}))
        .await?;
    missing.assert_problem(422);
    refused.push(missing);

    let wrong_type = host
        .send(
            host.client
                .post(&url)
                .bearer_auth(&t)
                .header("content-type", "text/plain")
                .body("{\"name\": \"x\", \"age\": 1}"),
        )
        .await?;
    wrong_type.assert_problem(415);
    refused.push(wrong_type);

    // JSON is UTF-8: any other charset is refused, utf-8 in any case is not.
    for charset in ["latin1", "utf-16", "ISO-8859-1"] {
        let labelled = host
            .send(
                host.client
                    .post(&url)
                    .bearer_auth(&t)
                    .header(
                        "content-type",
                        format!("application/json; charset={charset}"),
                    )
                    .body("{\"name\": \"x\", \"age\": 1}"),
            )
            .await?;
        labelled.assert_problem(415);
        refused.push(labelled);
    }
    let utf8 = host
        .send(
            host.client
                .post(&url)
                .bearer_auth(&t)
                .header("content-type", "application/json; charset=UTF-8")
                .body("{\"name\": \"x\", \"age\": 1}"),
        )
        .await?;
    assert_eq!(utf8.status.as_u16(), 200, "body: {}", utf8.body);

    // The test host allows 64 KiB.
    let big = json!({"name": "x", "age": 1, "pad": "x".repeat(70 * 1024)});
    let too_large = host.post("/acme/echo/v", Some(&t), &big).await?;
    too_large.assert_problem(413);
    refused.push(too_large);

    let ok = host
        .post("/acme/echo/v", Some(&t), &json!({"name": "x", "age": 1}))
        .await?;
    assert_eq!(ok.status.as_u16(), 200, "body: {}", ok.body);

    let data = host.stop().await?;
    let sql = "SELECT count(*) FROM invocations WHERE request_id = $1";
    for reply in &refused {
        assert_eq!(count(data.path(), sql, &[reply.request_id()]).await?, 0);
    }
    assert_eq!(count(data.path(), sql, &[ok.request_id()]).await?, 1);
    Ok(())
}

/// A body sent in chunks without a length is limited too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_oversized_body_is_413() -> Result<()> {
    let host = TestHost::start().await?;
    let t = token("ed", "acme", &["editor"]);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b' '; 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let reply = host
        .send(
            host.client
                .post(host.url("/acme/echo/v"))
                .bearer_auth(&t)
                .header("content-type", "application/json")
                .body(body),
        )
        .await?;
    reply.assert_problem(413);
    host.stop().await?;
    Ok(())
}
