//! Raw uploads refused before the function runs, by type, size and quota.

use super::*;

/// Reads one HTTP/1.1 response from `stream`: status, lower-case headers
/// and the body (by `content-length`, else up to the end of the stream).
async fn read_response(
    stream: &mut tokio::net::TcpStream,
) -> Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        answer.extend_from_slice(&buf[..n]);
        let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = head_end {
            let head = String::from_utf8_lossy(&answer[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status: u16 = lines
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .context("no status line")?
                .parse()?;
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let length = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse::<usize>().ok());
            let body = &answer[end + 4..];
            match length {
                Some(length) if body.len() >= length => {
                    return Ok((status, headers, body[..length].to_vec()));
                }
                None if n == 0 => return Ok((status, headers, body.to_vec())),
                _ => {}
            }
        }
        if n == 0 {
            bail!(
                "the connection closed mid-response: {:?}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
}

/// Raw uploads are refused before the function runs, with problems: a
/// media type not in `accept` (wildcards and parameters understood) is 415;
/// a body over `max_body_bytes` is 413, declared or streamed, and a
/// declared one is refused without waiting for the body; an upload past the
/// tenant's `max_stored_bytes` (blob bytes count) is 507, and so is a
/// guest's put. None of them leaves a file or a row behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_uploads_are_refused_by_type_size_and_quota() -> Result<()> {
    let host = TestHost::start().await?;
    for content_type in ["text/plain", "text/csv", "text/plain; charset=utf-8"] {
        let reply = upload(
            &host,
            "/acme/blobs/small-upload?keep=no",
            content_type,
            b"fits".to_vec(),
        )
        .await?;
        assert_eq!(
            reply.status, 200,
            "{content_type} is text/*: {}",
            reply.body
        );
    }
    let json_body = upload(
        &host,
        "/acme/blobs/small-upload?name=j",
        "application/json",
        b"{}".to_vec(),
    )
    .await?;
    assert_problem_kind(&json_body, 415, "unsupported-media-type");

    let declared = upload(
        &host,
        "/acme/blobs/small-upload?name=big",
        "text/plain",
        vec![b'x'; 2048],
    )
    .await?;
    assert_problem_kind(&declared, 413, "body-too-large");
    let chunks = futures_util::stream::iter(Noise::new(81, 4096, 512).map(Ok::<_, std::io::Error>));
    let streamed = host
        .client
        .post(host.url("/acme/blobs/small-upload?name=big"))
        .bearer_auth(acme())
        .header("content-type", "text/plain")
        .body(reqwest::Body::wrap_stream(chunks));
    let streamed = host.send(streamed).await?;
    assert_problem_kind(&streamed, 413, "body-too-large");

    // 100 MB declared to the files route (64 MiB), and no body sent: the
    // answer must come without the host waiting for it.
    let addr = host
        .base
        .strip_prefix("http://")
        .context("base is not http")?
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    let head = format!(
        "PUT /demo/files/huge.png HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: image/png\r\ncontent-length: 100000000\r\n\r\n",
        token("alice", "demo", &[])
    );
    stream.write_all(head.as_bytes()).await?;
    let (status, headers, body) = tokio::time::timeout(HANG_GUARD, read_response(&mut stream))
        .await
        .context("the host waited for a body it must refuse")??;
    assert_eq!(status, 413);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/problem+json"),
        "{headers:?}"
    );
    let problem: Value = serde_json::from_slice(&body)?;
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("body-too-large")),
        "{problem}"
    );

    // The quota counts blob bytes.
    let key = operator_key(&host)?;
    let quota = admin(
        &host,
        Method::PUT,
        "/v1/tenants/acme/quota",
        Some(&key),
        Some(json!({ "max_stored_bytes": 20_000 })),
    )
    .await?;
    assert_eq!(quota.status, 200, "body: {}", quota.body);
    let empty = stored_bytes(&host, "acme").await?;
    let first = upload(
        &host,
        "/acme/blobs/upload?name=q1",
        "application/octet-stream",
        noise(82, 12_000),
    )
    .await?;
    assert_eq!(first.status, 200, "body: {}", first.body);
    let used = stored_bytes(&host, "acme").await?;
    assert_eq!(used - empty, 12_000, "a blob counts its size");
    let over = upload(
        &host,
        "/acme/blobs/upload?name=q2",
        "application/octet-stream",
        noise(83, 12_000),
    )
    .await?;
    assert_problem_kind(&over, 507, "storage-quota-exceeded");
    let put_over = host
        .post(
            "/acme/blobs/run",
            Some(&acme()),
            &json!({ "ops": [put_op("q3", "application/octet-stream", &noise(84, 12_000))] }),
        )
        .await?;
    assert_problem_kind(&put_over, 507, "storage-quota-exceeded");

    assert_eq!(blob_rows(&host, "acme").await?, 1);
    assert_eq!(stored_bytes(&host, "acme").await?, used);
    no_staged_files(host.data(), "acme").await?;
    let objects = files_under(&blob_dir(host.data(), "acme").join("objects"))?;
    assert_eq!(objects.len(), 1, "{objects:?}");

    // Deleting frees the room again.
    run(&host, json!([{ "op": "delete", "name": "q1" }])).await?;
    assert_eq!(stored_bytes(&host, "acme").await?, empty);
    let fits = upload(
        &host,
        "/acme/blobs/upload?name=q2",
        "application/octet-stream",
        noise(83, 12_000),
    )
    .await?;
    assert_eq!(fits.status, 200, "body: {}", fits.body);
    host.stop().await?;
    Ok(())
}

/// With the bucket unreachable (nothing listens at its endpoint), blob
/// requests fail within the harness's hang guard, not after the S3
/// client's default 3-minute retry: an upload is 503
/// `store-unavailable` with `retry-after`, a guest's put is `unavailable`
/// (an error it handles), and documents work on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bucket_fails_blob_requests_fast() -> Result<()> {
    let data = TempDir::new()?;
    let credentials = sluice_tests::s3::credentials_file(data.path())?;
    // A port just released: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let host = TestHost::start_with(data, |config| {
        config.blobs = sluice_host::config::BlobsConfig {
            store: sluice_host::config::BlobStoreKind::S3,
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            bucket: Some("nowhere".to_owned()),
            region: Some("us-east-1".to_owned()),
            credentials_file: Some(credentials),
            ..Default::default()
        };
    })
    .await?;
    let refused = upload(&host, "/acme/blobs/upload", "image/png", noise(9, 1000)).await?;
    refused.assert_problem(503);
    assert!(
        refused.body["type"]
            .as_str()
            .unwrap_or_default()
            .ends_with("store-unavailable")
    );
    assert_eq!(refused.header("retry-after"), "1");
    let put = run(&host, json!([put_op("x", "text/plain", b"x")])).await?;
    assert!(is_error(&put[0], "unavailable"), "{}", put[0]);
    let counted = host
        .send(
            host.client
                .post(host.url("/acme/counters/still"))
                .bearer_auth(acme()),
        )
        .await?;
    assert_eq!(counted.status, 200, "{}", counted.body);
    assert_eq!(blob_rows(&host, "acme").await?, 0);
    Ok(())
}
