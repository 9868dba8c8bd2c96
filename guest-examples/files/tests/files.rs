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
