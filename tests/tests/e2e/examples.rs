//! The example guests' happy paths, as a user of the README would run them.

use anyhow::Result;
use reqwest::Method;
use serde_json::json;
use sluice_tests::{TestHost, document, eventually, token};

/// todo: create, read, list, update and delete; users see only their own
/// todos, an admin sees everyone's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todo_crud_with_ownership() -> Result<()> {
    let host = TestHost::start().await?;
    let alice = token("alice", "demo", &["member"]);
    let bob = token("bob", "demo", &["member"]);
    let admin = token("root", "demo", &["admin"]);

    let created = host
        .post(
            "/demo/todos",
            Some(&alice),
            &json!({"title": "write tests"}),
        )
        .await?;
    assert_eq!(created.status.as_u16(), 201, "body: {}", created.body);
    assert_eq!(created.body["owner"], "alice");
    assert_eq!(created.body["done"], false);
    let id = created.body["id"].as_str().unwrap_or_default().to_owned();
    host.post("/demo/todos", Some(&bob), &json!({"title": "bob's"}))
        .await?;

    let mine = host.get("/demo/todos", Some(&alice)).await?;
    assert_eq!(mine.status.as_u16(), 200);
    let titles: Vec<_> = mine.body["todos"]
        .as_array()
        .map(|t| t.iter().map(|t| t["title"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(titles, vec![json!("write tests")]);

    let path = format!("/demo/todos/{id}");
    host.get(&path, Some(&bob)).await?.assert_problem(404);
    assert_eq!(host.get(&path, Some(&admin)).await?.status.as_u16(), 200);
    let everyone = host.get("/demo/todos", Some(&admin)).await?;
    assert_eq!(everyone.body["todos"].as_array().map(Vec::len), Some(2));

    let updated = host
        .send_json(Method::PUT, &path, Some(&alice), &json!({"done": true}))
        .await?;
    assert_eq!(updated.status.as_u16(), 200, "body: {}", updated.body);
    assert_eq!(updated.body["done"], true);
    assert_eq!(host.get(&path, Some(&alice)).await?.body["done"], true);

    // The schema refuses unknown fields before the function runs.
    host.send_json(Method::PUT, &path, Some(&alice), &json!({"owner": "bob"}))
        .await?
        .assert_problem(422);

    let deleted = host
        .send(host.client.delete(host.url(&path)).bearer_auth(&alice))
        .await?;
    assert_eq!(deleted.status.as_u16(), 204);
    host.get(&path, Some(&alice)).await?.assert_problem(404);
    host.stop().await?;
    Ok(())
}

/// channels: only members post; a post and its notification message are
/// committed together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_members_post_and_notify() -> Result<()> {
    let host = TestHost::start().await?;
    let alice = token("alice", "demo", &[]);
    let bob = token("bob", "demo", &[]);
    let carol = token("carol", "demo", &[]);

    let created = host
        .post("/demo/channels", Some(&alice), &json!({"name": "general"}))
        .await?;
    assert_eq!(created.status.as_u16(), 201, "body: {}", created.body);
    host.post("/demo/channels", Some(&bob), &json!({"name": "general"}))
        .await?
        .assert_problem(409);

    let post = json!({"text": "hello"});
    host.post("/demo/channels/general/posts", Some(&bob), &post)
        .await?
        .assert_problem(403);
    host.post(
        "/demo/channels/general/members",
        Some(&bob),
        &json!({"subject": "bob"}),
    )
    .await?
    .assert_problem(403);
    let added = host
        .post(
            "/demo/channels/general/members",
            Some(&alice),
            &json!({"subject": "bob"}),
        )
        .await?;
    assert_eq!(added.status.as_u16(), 200, "body: {}", added.body);

    let posted = host
        .post("/demo/channels/general/posts", Some(&bob), &post)
        .await?;
    assert_eq!(posted.status.as_u16(), 201, "body: {}", posted.body);
    let listed = host
        .get("/demo/channels/general/posts", Some(&alice))
        .await?;
    assert_eq!(listed.body["posts"][0]["text"], "hello");
    assert_eq!(listed.body["posts"][0]["author"], "bob");
    host.get("/demo/channels/general/posts", Some(&carol))
        .await?
        .assert_problem(403);

    let (payload,): (Vec<u8>,) = sqlx::query_as(
        "SELECT payload FROM outbox WHERE tenant = 'demo' AND topic = 'channel-notifications' AND request_id = $1",
    )
    .bind(posted.request_id())
    .fetch_one(&host.db().await?)
    .await?;
    let message: serde_json::Value = serde_json::from_slice(&payload)?;
    assert_eq!(message["channel"], "general");
    assert_eq!(message["author"], "bob");
    assert_eq!(message["members"], json!(["alice", "bob"]));

    // The channels consumer turns the notification into one inbox entry
    // per member, after the response.
    for (reader, who) in [(&alice, "alice"), (&bob, "bob")] {
        let inbox = eventually(&format!("{who}'s inbox"), || async {
            let inbox = host.get("/demo/inbox", Some(reader)).await?;
            let has = inbox.body["entries"]
                .as_array()
                .is_some_and(|e| !e.is_empty());
            Ok(has.then_some(inbox))
        })
        .await?;
        let entries = inbox.body["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(entries.len(), 1, "inbox: {}", inbox.body);
        assert_eq!(entries[0]["channel"], "general");
        assert_eq!(entries[0]["author"], "bob");
        assert_eq!(entries[0]["member"], who);
    }
    let carols = host.get("/demo/inbox", Some(&carol)).await?;
    assert_eq!(carols.body["entries"], json!([]));
    host.stop().await?;
    Ok(())
}

/// janitor: a note outlives its expiry only until the next `cleanup` tick
/// (every ten seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_schedule_deletes_expired_notes() -> Result<()> {
    let host = TestHost::start().await?;
    let erin = token("erin", "demo", &[]);
    let created = host
        .post(
            "/demo/notes",
            Some(&erin),
            &json!({"text": "brief", "ttl_seconds": 1}),
        )
        .await?;
    assert_eq!(created.status.as_u16(), 201, "body: {}", created.body);
    let key = format!("erin/{}", created.body["id"].as_str().unwrap_or_default());
    assert!(
        document(host.data(), "demo", "notes", &key)
            .await?
            .is_some()
    );
    let kept = host
        .post(
            "/demo/notes",
            Some(&erin),
            &json!({"text": "lasting", "ttl_seconds": 3600}),
        )
        .await?;
    assert_eq!(kept.status.as_u16(), 201);

    eventually("the expired note to be deleted", || async {
        Ok(document(host.data(), "demo", "notes", &key)
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    let listed = host.get("/demo/notes", Some(&erin)).await?;
    let notes = listed.body["notes"].as_array().cloned().unwrap_or_default();
    assert_eq!(notes.len(), 1, "notes: {}", listed.body);
    assert_eq!(notes[0]["text"], "lasting");
    host.stop().await?;
    Ok(())
}

/// todo: listing pages through the caller's todos with `limit` and `cursor`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todo_list_pages_with_a_cursor() -> Result<()> {
    let host = TestHost::start().await?;
    let dana = token("dana", "demo", &[]);
    for n in 0..5 {
        let reply = host
            .post(
                "/demo/todos",
                Some(&dana),
                &json!({"title": format!("t{n}")}),
            )
            .await?;
        assert_eq!(reply.status.as_u16(), 201);
    }
    let mut seen = Vec::new();
    let mut path = "/demo/todos?limit=2".to_owned();
    for _ in 0..5 {
        let page = host.get(&path, Some(&dana)).await?;
        assert_eq!(page.status.as_u16(), 200, "body: {}", page.body);
        let todos = page.body["todos"].as_array().cloned().unwrap_or_default();
        assert!(todos.len() <= 2);
        seen.extend(
            todos
                .iter()
                .map(|t| t["title"].as_str().unwrap_or("").to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/demo/todos?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, vec!["t0", "t1", "t2", "t3", "t4"]);
    host.stop().await?;
    Ok(())
}
