//! Staging: a function sees its own staged blob changes, an upload is kept once, and a failed invocation leaves nothing behind.

use super::*;

/// A function that stages a put, or keeps an upload, and then fails leaves
/// no row, no committed file and, once it is cleaned up, no staged file;
/// committed blobs it replaced or deleted meanwhile are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_invocation_leaves_no_blob_behind() -> Result<()> {
    let host = TestHost::start().await?;
    run(&host, json!([put_op("kept", "text/plain", b"before")])).await?;
    let usage = stored_bytes(&host, "acme").await?;

    let ops = json!([
        put_op("doomed", "text/plain", b"never"),
        put_op("kept", "text/plain", b"overwritten?"),
        { "op": "delete", "name": "kept" },
    ]);
    let failed = host
        .post(
            "/acme/blobs/run",
            Some(&acme()),
            &json!({ "ops": ops, "fail": true }),
        )
        .await?;
    failed.assert_problem(500);
    let kept_and_failed = upload(
        &host,
        "/acme/blobs/upload?name=doomed-upload&fail=yes",
        "application/octet-stream",
        noise(31, 100_000),
    )
    .await?;
    kept_and_failed.assert_problem(500);

    assert_eq!(blob_rows(&host, "acme").await?, 1);
    no_staged_files(host.data(), "acme").await?;
    let objects = files_under(&blob_dir(host.data(), "acme").join("objects"))?;
    assert_eq!(objects.len(), 1, "only `kept` is committed: {objects:?}");
    let seen = run(
        &host,
        json!([
            { "op": "head", "name": "doomed" },
            { "op": "head", "name": "doomed-upload" },
            { "op": "get", "name": "kept" },
        ]),
    )
    .await?;
    assert_eq!(seen[0], Value::Null);
    assert_eq!(seen[1], Value::Null);
    assert_eq!(seen[2]["text"], "before");
    assert_eq!(stored_bytes(&host, "acme").await?, usage);
    host.stop().await?;
    Ok(())
}

/// Through the guest API: a put is seen by get, get-range, head and list in
/// the same invocation (created 0), a delete hides it there too; once
/// committed, blobs carry a creation time; listings page with a cursor and
/// merge staged puts and deletes with what is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_calls_see_their_own_staged_puts_and_deletes() -> Result<()> {
    let host = TestHost::start().await?;
    let started = now_ms();
    let staged = run(
        &host,
        json!([
            put_op("s/a", "text/plain", b"alpha"),
            { "op": "head", "name": "s/a" },
            { "op": "get", "name": "s/a" },
            { "op": "get_range", "name": "s/a", "offset": 1, "length": 3 },
            { "op": "get_range", "name": "s/a", "offset": 3, "length": 100 },
            { "op": "list", "prefix": "s/" },
            put_op("s/b", "application/json", b"{\"b\":1}"),
            { "op": "delete", "name": "s/a" },
            { "op": "get", "name": "s/a" },
            { "op": "head", "name": "s/a" },
            { "op": "list_all", "prefix": "s/" },
            { "op": "delete", "name": "s/never" },
        ]),
    )
    .await?;
    let alpha = json!({
        "name": "s/a",
        "size": 5,
        "content_type": "text/plain",
        "etag": sha256_hex(b"alpha"),
        "created": 0,
    });
    assert_eq!(staged[0], alpha, "put");
    assert_eq!(staged[1], alpha, "head of a staged put");
    assert_eq!(staged[2]["text"], "alpha");
    assert_eq!(staged[3]["text"], "lph");
    assert_eq!(staged[4]["text"], "ha", "a range past the end is cut short");
    assert_eq!(names_in(&staged[5]), ["s/a"]);
    assert_eq!(staged[7], true);
    assert_eq!(staged[8], Value::Null, "get after a staged delete");
    assert_eq!(staged[9], Value::Null, "head after a staged delete");
    assert_eq!(names_in(&staged[10]), ["s/b"]);
    assert_eq!(staged[11], false);

    let committed = run(
        &host,
        json!([
            { "op": "head", "name": "s/a" },
            { "op": "head", "name": "s/b" },
            { "op": "get", "name": "s/b" },
        ]),
    )
    .await?;
    assert_eq!(committed[0], Value::Null);
    assert_eq!(committed[1]["size"], 7);
    assert_eq!(committed[1]["content_type"], "application/json");
    let created = committed[1]["created"].as_u64().unwrap_or_default();
    assert!(
        (started..=now_ms()).contains(&created),
        "created {created}, test started at {started}"
    );
    assert_eq!(committed[2]["text"], "{\"b\":1}");

    // Committed p/0..p/4, listed two at a time.
    let puts: Vec<Value> = (0..5)
        .map(|i| put_op(&format!("p/{i}"), "text/plain", format!("{i}").as_bytes()))
        .collect();
    run(&host, Value::Array(puts)).await?;
    let mut pages = Vec::new();
    let mut cursor = Value::Null;
    for _ in 0..10 {
        let listed = run(
            &host,
            json!([{ "op": "list", "prefix": "p/", "limit": 2, "cursor": cursor }]),
        )
        .await?;
        let page = names_in(&listed[0]);
        assert!(page.len() <= 2, "{}", listed[0]);
        pages.extend(page);
        cursor = listed[0]["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(pages, ["p/0", "p/1", "p/2", "p/3", "p/4"]);

    // Staged puts and deletes merge into a listing of committed blobs, and
    // go away with a failed invocation.
    let ops = json!([
        put_op("p/2a", "text/plain", b"new"),
        { "op": "delete", "name": "p/1" },
        { "op": "list_all", "prefix": "p/" },
        { "op": "list", "prefix": "p/", "limit": 2 },
    ]);
    let merged = host
        .post(
            "/acme/blobs/run",
            Some(&acme()),
            &json!({ "ops": ops.clone() }),
        )
        .await?;
    assert_eq!(merged.status, 200, "body: {}", merged.body);
    assert_eq!(
        names_in(&merged.body[2]),
        ["p/0", "p/2", "p/2a", "p/3", "p/4"]
    );
    assert_eq!(names_in(&merged.body[3]), ["p/0", "p/2"]);
    assert!(merged.body[3]["next_cursor"].is_string());
    let after = run(&host, json!([{ "op": "list_all", "prefix": "p/" }])).await?;
    assert_eq!(names_in(&after[0]), ["p/0", "p/2", "p/2a", "p/3", "p/4"]);
    host.stop().await?;
    Ok(())
}

/// A raw route hands the function an empty body and the upload's metadata;
/// the upload is kept under one name only (a second name is `invalid`),
/// and one the function does not keep leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_kept_once_and_never_reaches_the_function_as_a_body() -> Result<()> {
    let host = TestHost::start().await?;
    let body = noise(71, 10_240);
    let kept = upload(
        &host,
        "/acme/blobs/upload?name=up-1&again=up-2",
        "application/x-thing",
        body.clone(),
    )
    .await?;
    assert_eq!(kept.status, 200, "body: {}", kept.body);
    let etag = sha256_hex(&body);
    assert_eq!(
        kept.body["upload"],
        json!({ "content_type": "application/x-thing", "size": 10_240, "etag": etag })
    );
    assert_eq!(kept.body["kept"]["name"], "up-1");
    assert_eq!(kept.body["kept"]["etag"], etag.as_str());
    assert_eq!(kept.body["kept"]["created"], 0);
    assert!(is_error(&kept.body["again"], "invalid"), "{}", kept.body);
    assert_eq!(kept.body["offered_after_keep"], false);
    assert_eq!(kept.body["body_len"], 0);
    let served = download(&host, "up-1", &[]).await?;
    assert_eq!(served.raw, body);
    assert_eq!(served.header("content-type"), "application/x-thing");
    let second = run(&host, json!([{ "op": "head", "name": "up-2" }])).await?;
    assert_eq!(second[0], Value::Null);

    let not_kept = upload(
        &host,
        "/acme/blobs/upload?keep=no",
        "application/octet-stream",
        noise(72, 5000),
    )
    .await?;
    assert_eq!(not_kept.status, 200, "body: {}", not_kept.body);
    assert_eq!(not_kept.body["kept"], Value::Null);
    assert_eq!(not_kept.body["upload"]["size"], 5000);
    no_staged_files(host.data(), "acme").await?;
    assert_eq!(blob_rows(&host, "acme").await?, 1);
    let objects = files_under(&blob_dir(host.data(), "acme").join("objects"))?;
    assert_eq!(objects.len(), 1, "{objects:?}");
    host.stop().await?;
    Ok(())
}
