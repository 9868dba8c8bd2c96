//! The todo example on a real host, through `sluice-test`.

use serde_json::json;
use sluice_test::{KitError, TestHost};

/// A todo goes through every route: created (the schema holds), read,
/// listed, counted, changed and deleted; another user sees none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_todo_lives_and_dies() -> Result<(), KitError> {
    let host = TestHost::start().await?;
    let alice = host.token("alice", &[]);
    let created = host
        .post("/todos")
        .token(&alice)
        .json(&json!({ "title": "milk" }))
        .send()
        .await?;
    assert_eq!(created.status, 201, "{}", created.json);
    let id = created.json["id"].as_str().unwrap_or_default().to_owned();
    let stored = host.document("todos", &format!("alice/{id}")).await?;
    assert_eq!(stored.map(|t| t["title"].clone()), Some(json!("milk")));

    let refused = host
        .post("/todos")
        .token(&alice)
        .json(&json!({ "title": 7 }))
        .send()
        .await?;
    assert_eq!(refused.status, 422, "the schema wants a string title");

    let read = host
        .get(&format!("/todos/{id}"))
        .token(&alice)
        .send()
        .await?;
    assert_eq!(read.json["title"], "milk");
    let listed = host.get("/todos").token(&alice).send().await?;
    assert_eq!(listed.json["todos"].as_array().map(Vec::len), Some(1));
    let counted = host.get("/todos/count").token(&alice).send().await?;
    assert_eq!(counted.json["count"], 1);

    let done = json!({ "done": true });
    let changed = host
        .put(&format!("/todos/{id}"))
        .token(&alice)
        .json(&done)
        .send()
        .await?;
    assert_eq!(changed.status, 200, "{}", changed.json);
    let bob = host.token("bob", &[]);
    let hidden = host.get(&format!("/todos/{id}")).token(&bob).send().await?;
    assert_eq!(hidden.status, 404);

    let deleted = host
        .delete(&format!("/todos/{id}"))
        .token(&alice)
        .send()
        .await?;
    assert!(deleted.status < 300, "{}", deleted.status);
    assert_eq!(host.document("todos", &format!("alice/{id}")).await?, None);
    host.stop().await;
    Ok(())
}

/// A todo seeded straight into the store (as if an earlier request had
/// made it) is served like any other: the index leads to its owner's copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_todo_is_served() -> Result<(), KitError> {
    let host = TestHost::start().await?;
    let todo = json!({ "id": "seeded", "owner": "alice", "title": "from the seed", "done": false });
    host.put_document("todos", "alice/seeded", &todo).await?;
    host.put_document("todo-index", "seeded", &json!("alice"))
        .await?;
    let alice = host.token("alice", &[]);
    let read = host.get("/todos/seeded").token(&alice).send().await?;
    assert_eq!(read.status, 200, "{}", read.json);
    assert_eq!(read.json["title"], "from the seed");
    host.stop().await;
    Ok(())
}

/// The count is cached: a value seeded into the tenant's cache is what
/// `GET /todos/count` answers, and a new todo drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_comes_from_the_cache() -> Result<(), KitError> {
    let host = TestHost::start().await?;
    let alice = host.token("alice", &[]);
    let counted = host.get("/todos/count").token(&alice).send().await?;
    assert_eq!(counted.json, json!({ "count": 0, "cached": false }));
    assert_eq!(host.cache_get("count/alice")?, Some(b"0".to_vec()));

    host.cache_set("count/alice", b"41", None)?;
    let cached = host.get("/todos/count").token(&alice).send().await?;
    assert_eq!(cached.json, json!({ "count": 41, "cached": true }));
    let todo = json!({ "title": "milk" });
    host.post("/todos").token(&alice).json(&todo).send().await?;
    assert_eq!(host.cache_get("count/alice")?, None);
    host.stop().await;
    Ok(())
}

/// A change whose commit conflicts (another request changed the todo in
/// between) runs again on the fresh todo and commits once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_change_runs_again() -> Result<(), KitError> {
    let host = TestHost::start().await?;
    let alice = host.token("alice", &[]);
    let todo = json!({ "title": "milk" });
    let created = host.post("/todos").token(&alice).json(&todo).send().await?;
    let id = created.json["id"].as_str().unwrap_or_default().to_owned();

    host.conflict_next_commits(1);
    let done = json!({ "done": true });
    let path = format!("/todos/{id}");
    let changed = host.put(&path).token(&alice).json(&done).send().await?;
    assert_eq!(changed.status, 200, "{}", changed.json);
    let stored = host.document("todos", &format!("alice/{id}")).await?;
    assert_eq!(stored.map(|t| t["done"].clone()), Some(json!(true)));
    let invocations = host.invocations().await?;
    let change = invocations
        .iter()
        .find(|i| i.route.starts_with("PUT"))
        .expect("the change's record");
    assert_eq!((change.attempts, change.outcome.as_str()), (2, "ok"));
    host.stop().await;
    Ok(())
}
