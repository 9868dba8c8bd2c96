//! {{name}} on a real host, through `sluice-test`: `cargo test`.

use sluice_test::{KitError, TestHost};

/// A file goes up and comes back byte for byte, to its owner only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_comes_back_as_it_went_up() -> Result<(), KitError> {
    let host = TestHost::start().await?;
    let alice = host.token("alice", &[]);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let put = host
        .put("/files/data.bin")
        .token(&alice)
        .body("application/octet-stream", bytes.clone())
        .send()
        .await?;
    assert_eq!(put.status, 201, "{}", put.json);
    assert_eq!(put.json["size"], 100_000);

    let got = host.get("/files/data.bin").token(&alice).send().await?;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), "application/octet-stream");
    assert!(got.body == bytes, "the file came back changed");
    let stored = host.blob("alice/data.bin").await?;
    assert_eq!(stored.as_deref(), Some(bytes.as_slice()));

    let bob = host.token("bob", &[]);
    let hidden = host.get("/files/data.bin").token(&bob).send().await?;
    assert_eq!(hidden.status, 404);
    host.stop().await;
    Ok(())
}
