//! Recovery: a crash or a lost file is put right at the next start.

use super::*;

/// Why the start-up repair tests are SQLite's only.
const BLOB_REPAIR_IS_SINGLE_NODE: &str = "nodes on one PostgreSQL database may share the blob \
     directory, so start-up repair keeps young orphan files and never drops rows";

/// A host that dies after moving an upload into `objects/` but before the
/// database commit (the debug build's `SLUICE_FAULT=blob-commit`) leaves a
/// file with no row; the next start removes it, and uploads work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_rename_and_commit_leaves_no_blob() -> Result<()> {
    sqlite_only(BLOB_REPAIR_IS_SINGLE_NODE).map_err(anyhow::Error::msg)?;
    let data = TempDir::new()?;
    let examples = [root().join("guest-examples")];
    let mut crashing = Process::start_with_env(
        data.path(),
        &examples,
        "",
        &[("SLUICE_FAULT", "blob-commit")],
    )?;
    let client = reqwest::Client::builder().timeout(HANG_GUARD).build()?;
    let alice = token("alice", "demo", &[]);
    let body = noise(51, 300_000);
    let attempt = client
        .put(format!("{}/demo/files/crash.png", crashing.base))
        .bearer_auth(&alice)
        .header("content-type", "image/png")
        .body(body.clone())
        .send()
        .await;
    assert!(
        attempt.is_err(),
        "the host answered {:?}",
        attempt.map(|r| r.status())
    );
    let status = crashing.exited().await?;
    assert!(!status.success(), "the host exited with {status}");
    let objects = blob_dir(data.path(), "demo").join("objects");
    assert_eq!(
        files_under(&objects)?.len(),
        1,
        "the fault point is after the rename"
    );
    drop(crashing);

    let host = TestHost::start_with(data, |_| {}).await?;
    assert_eq!(blob_rows(&host, "demo").await?, 0);
    eventually("the orphaned file to be removed", || {
        let objects = objects.clone();
        async move { Ok(files_under(&objects)?.is_empty().then_some(())) }
    })
    .await?;
    no_staged_files(host.data(), "demo").await?;
    let listed = host.get("/demo/files", Some(&alice)).await?;
    assert_eq!(listed.body["files"], json!([]), "body: {}", listed.body);

    let put = host
        .client
        .put(host.url("/demo/files/crash.png"))
        .bearer_auth(&alice)
        .header("content-type", "image/png")
        .body(body.clone());
    let retried = host.send(put).await?;
    assert_eq!(retried.status, 201, "body: {}", retried.body);
    let back = host.get("/demo/files/crash.png", Some(&alice)).await?;
    assert_eq!(back.raw, body);
    host.stop().await?;
    Ok(())
}

/// A row whose file is gone (deleted while the host was down) is dropped at
/// the next start: the blob is a 404, and the tenant's stored bytes fall
/// back to what its remaining blobs account for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_file_is_gone_is_dropped_at_start() -> Result<()> {
    sqlite_only(BLOB_REPAIR_IS_SINGLE_NODE).map_err(anyhow::Error::msg)?;
    let host = TestHost::start().await?;
    let empty = stored_bytes(&host, "acme").await?;
    let keep = noise(61, 3000);
    run(
        &host,
        json!([put_op("keep.bin", "application/octet-stream", &keep)]),
    )
    .await?;
    let with_keep = stored_bytes(&host, "acme").await?;
    run(
        &host,
        json!([put_op(
            "gone.bin",
            "application/octet-stream",
            &noise(62, 5000)
        )]),
    )
    .await?;
    let with_both = stored_bytes(&host, "acme").await?;
    // A blob counts its size.
    assert_eq!(with_keep - empty, 3000);
    assert_eq!(with_both - with_keep, 5000);

    let gone = object_file(host.data(), "acme", "gone.bin").await?;
    let data = host.stop().await?;
    std::fs::remove_file(&gone)?;
    let host = TestHost::start_with(data, |_| {}).await?;

    let row = "SELECT count(*) FROM blobs WHERE tenant = 'acme' AND name = 'gone.bin'";
    eventually("the row of the missing file to go", || async {
        Ok((host.count(row, &[]).await? == 0).then_some(()))
    })
    .await?;
    let missing = download(&host, "gone.bin", &[]).await?;
    assert_problem_kind(&missing, 404, "blob-not-found");
    let seen = run(
        &host,
        json!([{ "op": "head", "name": "gone.bin" }, { "op": "get", "name": "keep.bin" }]),
    )
    .await?;
    assert_eq!(seen[0], Value::Null);
    assert_eq!(bytes_of(&seen[1]), Some(keep));
    assert_eq!(stored_bytes(&host, "acme").await?, with_keep);

    run(&host, json!([{ "op": "delete", "name": "keep.bin" }])).await?;
    assert_eq!(stored_bytes(&host, "acme").await?, empty);
    host.stop().await?;
    Ok(())
}
