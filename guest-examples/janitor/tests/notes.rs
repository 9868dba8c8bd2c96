//! The janitor example on a real host, through `sluice-test`.

use serde_json::json;
use sluice_test::{KitError, TestHost};

/// A note with a time to live is listed, and a tick of the janitor's
/// schedule deletes it once it has expired.
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

    // A tick now rather than at the cron's next ten seconds, once the note
    // has expired: the clock moves, the test does not sleep.
    host.advance_clock(std::time::Duration::from_secs(2));
    let listed = host.get("/notes").token(&alice).send().await?;
    assert_eq!(listed.json["notes"], json!([]), "an expired note is hidden");
    assert!(
        host.document("notes", &format!("alice/{id}"))
            .await?
            .is_some()
    );
    host.tick("cleanup").await?;
    host.deliver_all().await?;
    assert_eq!(host.document("notes", &format!("alice/{id}")).await?, None);
    let listed = host.get("/notes").token(&alice).send().await?;
    assert_eq!(listed.json["notes"], json!([]));
    host.stop().await;
    Ok(())
}
