//! {{name}} on a real host, through `sluice-test`: `cargo test`.

use serde_json::json;
use sluice_test::{KitError, TestHost};

/// An item is created, read back by its owner, and by nobody else; the
/// host refuses a body its schema does not allow and a call without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_is_kept_for_its_owner() -> Result<(), KitError> {
    let host = TestHost::start().await?;
    let alice = host.token("alice", &[]);
    let item = json!({ "name": "first" });
    let created = host.post("/items").token(&alice).json(&item).send().await?;
    assert_eq!(created.status, 201, "{}", created.json);
    let id = created.json["id"].as_str().unwrap_or_default().to_owned();

    let read = host.get(&format!("/items/{id}")).token(&alice).send().await?;
    assert_eq!(read.status, 200, "{}", read.json);
    assert_eq!(read.json["name"], "first");
    let bob = host.token("bob", &[]);
    let hidden = host.get(&format!("/items/{id}")).token(&bob).send().await?;
    assert_eq!(hidden.status, 404);

    let bad = json!({ "name": 7 });
    let refused = host.post("/items").token(&alice).json(&bad).send().await?;
    assert_eq!(refused.status, 422, "the schema wants a string name");
    let anonymous = host.post("/items").json(&item).send().await?;
    assert_eq!(anonymous.status, 401);
    host.stop().await;
    Ok(())
}
