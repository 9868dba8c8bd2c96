//! The janitor example on a real host, through `sluice-test`.

use serde_json::json;
use sluice_test::{KitError, TestHost};

/// A note with a time to live is listed, and the janitor's schedule (every
/// ten seconds) deletes it once it has expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_note_is_swept() -> Result<(), KitError> {
    let host = TestHost::start().await?;
    let alice = host.token("alice", &[]);
    let note = json!({ "text": "gone soon", "ttl_seconds": 1 });
    let made = host.post("/notes").token(&alice).json(&note).send().await?;
    assert_eq!(made.status, 201, "{}", made.json);
    let id = made.json["id"].as_str().unwrap_or_default().to_owned();
    let listed = host.get("/notes").token(&alice).send().await?;
    assert_eq!(
        listed.json["notes"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.json
    );

    let key = format!("alice/{id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    while host.document("notes", &key).await?.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the janitor never swept {key}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    host.stop().await;
    Ok(())
}
