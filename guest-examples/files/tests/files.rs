//! The files example on a real host, through `sluice-test`.

use sluice_test::{KitError, TestHost};

/// A file goes up as a raw body, comes back byte for byte with its ETag,
/// and only its owner (or an admin) reads it; a type not accepted is 415.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_up_and_comes_back() -> Result<(), KitError> {
    let host = TestHost::start().await?;
    let alice = host.token("alice", &[]);
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let put = host
        .put("/files/cat.png")
        .token(&alice)
        .body("image/png", bytes.clone())
        .send()
        .await?;
    assert_eq!(put.status, 201, "{}", put.json);
    let got = host.get("/files/cat.png").token(&alice).send().await?;
    assert_eq!(got.status, 200);
    assert!(got.body == bytes, "the file came back changed");
    assert_eq!(
        got.header("etag"),
        format!("\"{}\"", put.json["etag"].as_str().unwrap_or_default())
    );

    let bob = host.token("bob", &[]);
    assert_eq!(
        host.get("/files/cat.png").token(&bob).send().await?.status,
        404
    );
    let admin = host.token("root", &["admin"]);
    let as_admin = host
        .get("/users/alice/files/cat.png")
        .token(&admin)
        .send()
        .await?;
    assert!(as_admin.body == bytes, "an admin reads anyone's file");

    let text = host
        .put("/files/a.txt")
        .token(&alice)
        .body("text/plain", "hi")
        .send()
        .await?;
    assert_eq!(text.status, 415);
    host.stop().await;
    Ok(())
}

/// A file seeded straight into the store (as if an earlier upload had
/// kept it) is listed and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_file_is_served() -> Result<(), KitError> {
    let host = TestHost::start().await?;
    host.put_blob(
        "alice/notes.pdf",
        "application/pdf",
        b"%PDF-1.7 seeded".to_vec(),
    )
    .await?;
    let alice = host.token("alice", &[]);
    let listed = host.get("/files").token(&alice).send().await?;
    assert_eq!(
        listed.json["files"][0]["name"], "notes.pdf",
        "{}",
        listed.json
    );
    let got = host.get("/files/notes.pdf").token(&alice).send().await?;
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"%PDF-1.7 seeded"[..])
    );
    assert_eq!(
        host.blob("alice/notes.pdf").await?.as_deref(),
        Some(&b"%PDF-1.7 seeded"[..])
    );
    host.stop().await;
    Ok(())
}
