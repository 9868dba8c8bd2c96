//! The channels example on a real host, through `sluice-test`.

use serde_json::json;
use sluice_test::{KitError, TestHost};

/// A post to a channel reaches every member's inbox once its notification
/// is delivered; someone who is not a member may not post.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_reaches_every_members_inbox() -> Result<(), KitError> {
    let host = TestHost::start().await?;
    let (alice, bob, eve) = (
        host.token("alice", &[]),
        host.token("bob", &[]),
        host.token("eve", &[]),
    );
    let made = host
        .post("/channels")
        .token(&alice)
        .json(&json!({ "name": "ops" }))
        .send()
        .await?;
    assert_eq!(made.status, 201, "{}", made.json);
    let joined = host
        .post("/channels/ops/members")
        .token(&alice)
        .json(&json!({ "subject": "bob" }))
        .send()
        .await?;
    assert!(joined.status < 300, "{}", joined.json);

    let posted = host
        .post("/channels/ops/posts")
        .token(&bob)
        .json(&json!({ "text": "hi" }))
        .send()
        .await?;
    assert_eq!(posted.status, 201, "{}", posted.json);
    let outsider = host
        .post("/channels/ops/posts")
        .token(&eve)
        .json(&json!({ "text": "x" }))
        .send()
        .await?;
    assert_eq!(outsider.status, 403);

    let sent = host.messages("channel-notifications").await?;
    assert_eq!(sent.len(), 1, "one notification for the one post");
    assert_eq!(sent[0].json["members"], json!(["alice", "bob"]));
    host.deliver_all().await?;
    for (who, token) in [("alice", &alice), ("bob", &bob)] {
        let inbox = host.get("/inbox").token(token).send().await?;
        let entries = inbox.json["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(entries.len(), 1, "{who}'s inbox: {}", inbox.json);
        assert_eq!(entries[0]["author"], "bob");
    }
    let inbox = host.get("/inbox").token(&eve).send().await?;
    assert_eq!(inbox.json["entries"], json!([]));
    host.stop().await;
    Ok(())
}
