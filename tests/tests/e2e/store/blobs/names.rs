//! Names: blob names are opaque keys that never reach a path, and links planted in the blob tree are not followed.

use super::*;

/// Names like `../escape` and `/etc/passwd` are only keys: they round-trip
/// through put, get, head, list and a download, and the only files the host
/// creates are in `blobs/acme/objects`, under names of its own. Names the
/// contract excludes (over 1024 bytes, control characters, empty) are
/// `invalid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_names_are_opaque_and_never_reach_a_path() -> Result<()> {
    local_only("it looks at the files the host creates").map_err(anyhow::Error::msg)?;
    // The data directory inside one of our own, so that anything written
    // beside it (`<data>/../escape`) is seen too.
    let outer = TempDir::new()?;
    let data = TempDir::new_in(outer.path())?;
    let data_path = data.path().to_owned();
    let host = TestHost::start_with(data, |_| {}).await?;
    let before = entries_under(outer.path())?;
    let passwd = std::fs::read("/etc/passwd").ok();

    let longest = "n".repeat(1024);
    let names = [
        "../escape",
        "/etc/passwd",
        "a/../../b",
        "..",
        ".",
        "./.",
        "../../../../../../../../tmp/sluice-blob-escape",
        "objects/../tmp/x",
        "C:\\..\\windows",
        "~",
        longest.as_str(),
    ];
    let puts: Vec<Value> = names
        .iter()
        .map(|name| put_op(name, "text/plain", format!("content of {name}").as_bytes()))
        .collect();
    let stored = run(&host, Value::Array(puts)).await?;
    for (name, result) in names.iter().zip(&stored) {
        assert_eq!(result["name"], *name, "put {name:?}: {result}");
    }
    let mut reads: Vec<Value> = names
        .iter()
        .flat_map(|name| {
            [
                json!({ "op": "get", "name": name }),
                json!({ "op": "head", "name": name }),
            ]
        })
        .collect();
    reads.push(json!({ "op": "list_all" }));
    let read = run(&host, Value::Array(reads)).await?;
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            read[2 * i]["text"],
            format!("content of {name}"),
            "{name:?}"
        );
        assert_eq!(read[2 * i + 1]["name"], *name, "{name:?}");
    }
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort_unstable();
    assert_eq!(names_in(&read[2 * names.len()]), sorted);
    let served = download(&host, "../escape", &[]).await?;
    assert_eq!(served.status, 200, "body: {}", served.body);
    assert_eq!(served.raw, b"content of ../escape");

    let refused = run(
        &host,
        json!([
            { "op": "put", "name": "x".repeat(1025), "data": "no" },
            { "op": "put", "name": "nul\u{0}byte", "data": "no" },
            { "op": "put", "name": "line\nbreak", "data": "no" },
            { "op": "put", "name": "", "data": "no" },
            { "op": "head", "name": "nul\u{0}byte" },
        ]),
    )
    .await?;
    for (i, result) in refused.iter().enumerate() {
        assert!(is_error(result, "invalid"), "refused op {i}: {result}");
    }
    assert_eq!(blob_rows(&host, "acme").await?, names.len() as i64);
    let data = host.stop().await?;

    let objects = data_path.join("blobs/acme/objects");
    let tmp = data_path.join("blobs/acme/tmp");
    let expected_dirs = [
        data_path.join("blobs"),
        data_path.join("blobs/acme"),
        objects.clone(),
        tmp.clone(),
    ];
    let mut object_files = Vec::new();
    for path in entries_under(outer.path())? {
        if before.contains(&path) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path)?;
        let in_root_named = |prefix: &str| {
            path.parent() == Some(data_path.as_path())
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
        };
        if meta.is_file() && path.parent() == Some(objects.as_path()) {
            object_files.push(path.clone());
        } else if (meta.is_dir() && expected_dirs.contains(&path))
            || in_root_named("sluice.db")
            || in_root_named("test-database-url")
        {
            continue;
        } else {
            bail!(
                "storing blobs created {} (only files in {} were expected)",
                path.display(),
                objects.display()
            );
        }
    }
    assert_eq!(object_files.len(), names.len(), "{object_files:?}");
    for file in &object_files {
        let id = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            id.len() >= 16 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
            "{id:?} is not a name the host made"
        );
    }
    assert!(files_under(&tmp)?.is_empty(), "staged files remain");
    assert_eq!(std::fs::read("/etc/passwd").ok(), passwd);
    drop(data);
    Ok(())
}

/// Symlinks planted in the blob tree are not followed: a committed blob's
/// file swapped for a link to a secret serves a 5xx problem, not the secret,
/// to a client or the guest; a staging directory swapped for a link to
/// another directory makes an upload fail with a 5xx and writes nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_in_the_blob_tree_are_not_followed() -> Result<()> {
    local_only("a bucket has no links").map_err(anyhow::Error::msg)?;
    let outside = TempDir::new()?;
    let secret = outside.path().join("secret.txt");
    let secret_text = format!("top secret {}", sha256_hex(&noise(41, 16)));
    std::fs::write(&secret, &secret_text)?;
    let host = TestHost::start().await?;
    run(&host, json!([put_op("victim", "text/plain", b"harmless")])).await?;

    let victim = object_file(host.data(), "acme", "victim").await?;
    std::fs::remove_file(&victim)?;
    std::os::unix::fs::symlink(&secret, &victim)?;
    let served = download(&host, "victim", &[]).await?;
    assert!(
        !String::from_utf8_lossy(&served.raw).contains(&secret_text),
        "the download followed the link"
    );
    assert!(
        served.status.is_server_error(),
        "{}: {}",
        served.status,
        served.body
    );
    served.assert_problem(served.status.as_u16());
    let read = run(
        &host,
        json!([
            { "op": "get", "name": "victim" },
            { "op": "get_range", "name": "victim", "offset": 0, "length": 100 },
        ]),
    )
    .await?;
    for result in &read {
        assert!(
            !result.to_string().contains(&secret_text) && bytes_of(result).is_none(),
            "the guest read through the link: {result}"
        );
        assert!(result["error"].is_string(), "{result}");
    }

    let elsewhere = TempDir::new()?;
    let tmp = blob_dir(host.data(), "acme").join("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::os::unix::fs::symlink(elsewhere.path(), &tmp)?;
    let refused = upload(
        &host,
        "/acme/blobs/upload?name=through-the-link",
        "application/octet-stream",
        noise(42, 10_000),
    )
    .await?;
    assert!(
        refused.status.is_server_error(),
        "{}: {}",
        refused.status,
        refused.body
    );
    refused.assert_problem(refused.status.as_u16());
    // A put staged by the guest must not land there either.
    let _ = host
        .post(
            "/acme/blobs/run",
            Some(&acme()),
            &json!({ "ops": [put_op("through-the-link", "text/plain", b"x")] }),
        )
        .await?;
    assert_eq!(
        entries_under(elsewhere.path())?,
        Vec::<PathBuf>::new(),
        "the host wrote through the link"
    );
    host.stop().await?;
    Ok(())
}
