//! Serving blobs: byte ranges and conditional requests, and who may read whose files.

use super::*;

/// A blob served with `Response::blob`: the whole of it with its length,
/// ETag and type; byte ranges as 206 (first bytes, an open end, a suffix, an
/// end past the size); 416 past the end; 304 for a matching ETag (strong,
/// weak, in a list, `*`); `If-Range`; the whole blob for ranges it does not
/// serve; a 404 problem for a missing blob; names that need encoding in the
/// header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_answer_ranges_and_conditional_requests() -> Result<()> {
    let host = TestHost::start().await?;
    let data = noise(11, 1000);
    let etag = sha256_hex(&data);
    let odd = "dir/naïve file 100% #1+?.txt";
    let stored = run(
        &host,
        json!([
            put_op("r.bin", "image/webp", &data),
            put_op(odd, "text/plain", b"odd")
        ]),
    )
    .await?;
    assert_eq!(stored[0]["etag"], etag.as_str(), "{}", stored[0]);

    let full = download(&host, "r.bin", &[]).await?;
    assert_eq!(full.status, 200);
    assert_eq!(full.raw, data);
    assert_eq!(full.header("content-length"), "1000");
    assert_eq!(full.header("content-type"), "image/webp");
    assert_eq!(full.header("etag"), format!("\"{etag}\""));
    assert_eq!(full.header("accept-ranges"), "bytes");
    assert!(
        full.headers.get("x-sluice-blob").is_none(),
        "the host must strip the header the function set"
    );

    for (range, content_range, bytes) in [
        ("bytes=0-99", "bytes 0-99/1000", &data[..100]),
        ("bytes=100-", "bytes 100-999/1000", &data[100..]),
        ("bytes=-10", "bytes 990-999/1000", &data[990..]),
        ("bytes=900-5000", "bytes 900-999/1000", &data[900..]),
    ] {
        let part = download(&host, "r.bin", &[("range", range)]).await?;
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(part.header("content-range"), content_range, "{range}");
        assert_eq!(part.header("content-length"), bytes.len().to_string());
        assert_eq!(part.raw, bytes, "{range}");
    }
    let past = download(&host, "r.bin", &[("range", "bytes=1000-")]).await?;
    assert_eq!(past.status, 416, "body: {}", past.body);
    assert_eq!(past.header("content-range"), "bytes */1000");

    let quoted = format!("\"{etag}\"");
    let unchanged = download(&host, "r.bin", &[("if-none-match", quoted.as_str())]).await?;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.raw.is_empty());
    let weak = format!("W/\"{etag}\"");
    let listed = format!("\"0000\", \"{etag}\"");
    for matching in [weak.as_str(), listed.as_str(), "*"] {
        let reply = download(&host, "r.bin", &[("if-none-match", matching)]).await?;
        assert_eq!(reply.status, 304, "if-none-match: {matching}");
    }
    let changed = download(&host, "r.bin", &[("if-none-match", "\"0000\"")]).await?;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.raw, data);

    // A range only while the etag still matches; the whole blob for what
    // a single range cannot say.
    let current = download(
        &host,
        "r.bin",
        &[("range", "bytes=0-9"), ("if-range", quoted.as_str())],
    )
    .await?;
    assert_eq!(current.status, 206);
    assert_eq!(current.raw, &data[..10]);
    for (range, if_range) in [
        ("bytes=0-9", Some("\"0000\"")),
        ("bytes=0-1,5-6", None),
        ("items=0-9", None),
        ("bytes=oops", None),
    ] {
        let mut headers = vec![("range", range)];
        headers.extend(if_range.map(|tag| ("if-range", tag)));
        let whole = download(&host, "r.bin", &headers).await?;
        assert_eq!(whole.status, 200, "{range} {if_range:?}");
        assert_eq!(whole.raw, data, "{range} {if_range:?}");
    }
    let nothing = download(&host, "r.bin", &[("range", "bytes=-0")]).await?;
    assert_eq!(nothing.status, 416);

    let missing = download(&host, "no-such-blob", &[]).await?;
    assert_problem_kind(&missing, 404, "blob-not-found");

    // The name goes through the header percent-encoded and back exactly.
    let odd_back = download(&host, odd, &[]).await?;
    assert_eq!(odd_back.status, 200, "body: {}", odd_back.body);
    assert_eq!(odd_back.raw, b"odd");
    host.stop().await?;
    Ok(())
}

/// The files example: users upload, list, download and delete their own
/// files; another user's are a 404 everywhere and a name of their own is a
/// separate file; only an admin reads another user's file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_belong_to_their_owner_and_admins_read_any() -> Result<()> {
    let host = TestHost::start().await?;
    let alice = token("alice", "demo", &["member"]);
    let bob = token("bob", "demo", &["member"]);
    let root_user = token("root", "demo", &["admin"]);
    let put = |who: &str, name: &str, content_type: &str, body: Vec<u8>| {
        host.client
            .put(host.url(&format!("/demo/files/{name}")))
            .bearer_auth(who)
            .header("content-type", content_type)
            .body(body)
    };
    let get = |who: &str, path: &str| host.client.get(host.url(path)).bearer_auth(who);

    let first = noise(21, 5000);
    let created = host.send(put(&alice, "a.png", "image/png", first)).await?;
    assert_eq!(created.status, 201, "body: {}", created.body);
    let photo = noise(22, 7000);
    let replaced = host
        .send(put(&alice, "a.png", "image/png", photo.clone()))
        .await?;
    assert_eq!(replaced.status, 200, "a second upload replaces the file");
    assert_eq!(
        replaced.body,
        json!({
            "name": "a.png",
            "size": 7000,
            "content_type": "image/png",
            "etag": sha256_hex(&photo),
        })
    );
    for (name, content_type) in [("b.pdf", "application/pdf"), ("c.jpg", "image/jpeg")] {
        let reply = host
            .send(put(&alice, name, content_type, noise(23, 100)))
            .await?;
        assert_eq!(reply.status, 201, "{name}: {}", reply.body);
    }
    // The route's `accept` turns away other types before the function runs.
    let text = host
        .send(put(&alice, "notes.txt", "text/plain", b"hi".to_vec()))
        .await?;
    assert_problem_kind(&text, 415, "unsupported-media-type");
    let too_long = "x".repeat(201);
    for bad in [".hidden", too_long.as_str()] {
        let reply = host
            .send(put(&alice, bad, "image/png", b"x".to_vec()))
            .await?;
        reply.assert_problem(400);
    }

    // Listing pages through alice's files only.
    let mut listed = Vec::new();
    let mut path = "/demo/files?limit=2".to_owned();
    for _ in 0..5 {
        let page = host.send(get(&alice, &path)).await?;
        assert_eq!(page.status, 200, "body: {}", page.body);
        let files = page.body["files"].as_array().cloned().unwrap_or_default();
        assert!(files.len() <= 2, "{}", page.body);
        listed.extend(files);
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/demo/files?limit=2&cursor={}", query_escape(cursor)),
            None => break,
        }
    }
    let names: Vec<&str> = listed.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["a.png", "b.pdf", "c.jpg"]);
    assert_eq!(listed[0]["size"], 7000);
    assert_eq!(listed[0]["etag"], sha256_hex(&photo));
    assert!(listed[0]["created"].as_u64().is_some_and(|c| c > 0));

    let mine = host.send(get(&alice, "/demo/files/a.png")).await?;
    assert_eq!(mine.status, 200, "body: {}", mine.body);
    assert_eq!(mine.raw, photo);
    assert_eq!(mine.header("content-type"), "image/png");
    assert_eq!(
        mine.header("content-disposition"),
        "inline; filename=\"a.png\""
    );

    // Bob sees none of it, and his a.png is his own.
    let bobs = host.send(get(&bob, "/demo/files")).await?;
    assert_eq!(bobs.body["files"], json!([]));
    host.send(get(&bob, "/demo/files/a.png"))
        .await?
        .assert_problem(404);
    let bob_delete = host
        .client
        .delete(host.url("/demo/files/a.png"))
        .bearer_auth(&bob);
    host.send(bob_delete).await?.assert_problem(404);
    let bob_photo = noise(24, 300);
    let own = host
        .send(put(&bob, "a.png", "image/png", bob_photo.clone()))
        .await?;
    assert_eq!(own.status, 201, "bob's a.png is a new file: {}", own.body);
    assert_eq!(
        host.send(get(&alice, "/demo/files/a.png")).await?.raw,
        photo
    );

    // Only an admin reads another user's file.
    host.send(get(&bob, "/demo/users/alice/files/a.png"))
        .await?
        .assert_problem(403);
    let by_admin = host
        .send(get(&root_user, "/demo/users/alice/files/a.png"))
        .await?;
    assert_eq!(by_admin.status, 200, "body: {}", by_admin.body);
    assert_eq!(by_admin.raw, photo);
    host.send(get(&root_user, "/demo/users/alice/files/none.png"))
        .await?
        .assert_problem(404);

    let deleted = host
        .send(
            host.client
                .delete(host.url("/demo/files/a.png"))
                .bearer_auth(&alice),
        )
        .await?;
    assert_eq!(deleted.status, 204);
    host.send(get(&alice, "/demo/files/a.png"))
        .await?
        .assert_problem(404);
    assert_eq!(
        host.send(get(&bob, "/demo/files/a.png")).await?.raw,
        bob_photo
    );
    let rows = host
        .count(
            "SELECT count(*) FROM blobs WHERE tenant = 'demo' AND name IN ('alice/a.png', 'bob/a.png')",
            &[],
        )
        .await?;
    assert_eq!(rows, 1);
    host.stop().await?;
    Ok(())
}
