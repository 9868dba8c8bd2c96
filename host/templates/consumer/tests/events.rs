//! {{name}} on a real host, through `sluice-test`: `cargo test`.

use serde_json::json;
use sluice_test::{KitError, TestHost};

/// Three events are sent, delivered and counted once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_counted_once() -> Result<(), KitError> {
    let host = TestHost::start().await?;
    let alice = host.token("alice", &[]);
    for kind in ["signup", "signup", "login"] {
        let event = json!({ "kind": kind });
        let sent = host.post("/events").token(&alice).json(&event).send().await?;
        assert_eq!(sent.status, 202, "{}", sent.json);
    }
    assert_eq!(host.messages("events").await?.len(), 3);

    host.deliver_all().await?;
    let signups = host.get("/counts/signup").token(&alice).send().await?;
    assert_eq!(signups.json["count"], 2, "{}", signups.json);
    let stored = host.document("counts", "login").await?;
    assert_eq!(stored.map(|count| count["count"].clone()), Some(json!(1)));
    host.stop().await;
    Ok(())
}
