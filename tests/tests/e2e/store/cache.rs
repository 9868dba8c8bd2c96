//! The cache: per-tenant values with expiry and counters, bounded per entry
//! and per tenant, and not transactional.

use anyhow::{Context, Result, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use sluice_tests::{TestHost, eventually, token};
use tempfile::TempDir;

/// Runs `ops` in `tenant`'s cache probe; asserts a 200 and returns each op's result.
async fn run(host: &TestHost, tenant: &str, ops: Value) -> Result<Vec<Value>> {
    let reply = host
        .post(
            &format!("/{tenant}/cache/run"),
            Some(&token("cachey", tenant, &[])),
            &json!({ "ops": ops }),
        )
        .await?;
    ensure!(
        reply.status == 200,
        "{tenant}/cache/run answered {}: {}",
        reply.status,
        reply.body
    );
    reply
        .body
        .as_array()
        .cloned()
        .context("cache/run did not answer an array")
}

/// The result of one `get` of `key` in `tenant`'s cache.
async fn get(host: &TestHost, tenant: &str, key: &str) -> Result<Value> {
    let results = run(host, tenant, json!([{ "op": "get", "key": key }])).await?;
    Ok(results.into_iter().next().unwrap_or_default())
}

/// Whether a probe's result is the error `kind` (`invalid`, `too-large`, ...).
fn is_error(result: &Value, kind: &str) -> bool {
    result["error"]
        .as_str()
        .is_some_and(|e| e.starts_with(&format!("{kind}: ")))
}

/// Set, get, replace and delete; an empty value is a value, not a miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_values_are_set_read_replaced_and_deleted() -> Result<()> {
    let host = TestHost::start().await?;
    let results = run(
        &host,
        "acme",
        json!([
            { "op": "set", "key": "k", "value": "v" },
            { "op": "get", "key": "k" },
            { "op": "set", "key": "k", "value": "w" },
            { "op": "get", "key": "k" },
            { "op": "set", "key": "empty", "value": "" },
            { "op": "get", "key": "empty" },
            { "op": "get", "key": "never-set" },
        ]),
    )
    .await?;
    assert_eq!(results[0], "ok");
    assert_eq!(results[1]["text"], "v");
    assert_eq!(results[3]["text"], "w");
    assert_eq!(results[5], json!({ "size": 0, "text": "" }));
    assert_eq!(results[6], Value::Null);

    // Another request sees it: the cache outlives an invocation.
    assert_eq!(get(&host, "acme", "k").await?["text"], "w");
    let deleted = run(
        &host,
        "acme",
        json!([
            { "op": "delete", "key": "k" },
            { "op": "delete", "key": "k" },
            { "op": "get", "key": "k" },
        ]),
    )
    .await?;
    assert_eq!(deleted, [json!(true), json!(false), Value::Null]);
    host.stop().await?;
    Ok(())
}

/// An entry with a TTL is there at once and gone after it; one without
/// stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_entries_expire_after_their_ttl() -> Result<()> {
    let host = TestHost::start().await?;
    let set = run(
        &host,
        "acme",
        json!([
            { "op": "set", "key": "brief", "value": "v", "ttl_ms": 200 },
            { "op": "get", "key": "brief" },
            { "op": "set", "key": "lasting", "value": "v" },
        ]),
    )
    .await?;
    assert_eq!(
        set[1]["text"], "v",
        "read in the same invocation as the set"
    );
    eventually("the 200 ms entry to expire", || async {
        Ok(get(&host, "acme", "brief").await?.is_null().then_some(()))
    })
    .await?;
    assert_eq!(get(&host, "acme", "lasting").await?["text"], "v");
    host.stop().await?;
    Ok(())
}

/// A counter starts at 0, is stored as decimal text, refuses a value that
/// is not a number, and keeps the expiry of its first increment (a fixed
/// window) rather than taking a later one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_start_at_zero_and_keep_their_first_window() -> Result<()> {
    let host = TestHost::start().await?;
    let counted = run(
        &host,
        "acme",
        json!([
            { "op": "increment", "key": "c", "delta": 5 },
            { "op": "increment", "key": "c", "delta": -2 },
            { "op": "get", "key": "c" },
            { "op": "set", "key": "word", "value": "abc" },
            { "op": "increment", "key": "word", "delta": 1 },
            { "op": "set", "key": "max", "value": i64::MAX.to_string() },
            { "op": "increment", "key": "max", "delta": 1 },
            // A window of 300 ms; the second increment's 10 minutes must not extend it.
            { "op": "increment", "key": "window", "delta": 1, "ttl_ms": 300 },
            { "op": "increment", "key": "window", "delta": 1, "ttl_ms": 600_000 },
        ]),
    )
    .await?;
    assert_eq!(counted[0], 5);
    assert_eq!(counted[1], 3);
    assert_eq!(counted[2]["text"], "3");
    assert!(is_error(&counted[4], "not-a-counter"), "{}", counted[4]);
    assert!(counted[6]["error"].is_string(), "overflow: {}", counted[6]);
    assert_eq!(counted[7], 1);
    assert_eq!(counted[8], 2);
    eventually("the counter's first window to end", || async {
        Ok(get(&host, "acme", "window").await?.is_null().then_some(()))
    })
    .await?;
    let restarted = run(
        &host,
        "acme",
        json!([{ "op": "increment", "key": "window", "delta": 1, "ttl_ms": 300 }]),
    )
    .await?;
    assert_eq!(restarted[0], 1, "a new window starts at 0");
    host.stop().await?;
    Ok(())
}

/// Two tenants running the same component with the same keys each see
/// only their own entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_has_its_own_cache() -> Result<()> {
    let host = TestHost::start().await?;
    run(
        &host,
        "acme",
        json!([
            { "op": "set", "key": "shared", "value": "acme's" },
            { "op": "increment", "key": "n", "delta": 10 },
        ]),
    )
    .await?;
    let other = run(
        &host,
        "other",
        json!([
            { "op": "get", "key": "shared" },
            { "op": "set", "key": "shared", "value": "other's" },
            { "op": "increment", "key": "n", "delta": 1 },
        ]),
    )
    .await?;
    assert_eq!(other[0], Value::Null, "other read acme's entry");
    assert_eq!(other[2], 1, "other counted on acme's counter");
    assert_eq!(get(&host, "acme", "shared").await?["text"], "acme's");
    assert_eq!(get(&host, "acme", "n").await?["text"], "10");

    let deleted = run(&host, "acme", json!([{ "op": "delete", "key": "shared" }])).await?;
    assert_eq!(deleted[0], true);
    assert_eq!(get(&host, "other", "shared").await?["text"], "other's");
    host.stop().await?;
    Ok(())
}

/// Sets, increments and deletes made by an invocation that then fails stay
/// done: the cache is not part of the transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_effects_stay_when_the_invocation_fails() -> Result<()> {
    let host = TestHost::start().await?;
    run(
        &host,
        "acme",
        json!([{ "op": "set", "key": "old", "value": "x" }]),
    )
    .await?;
    let ops = json!([
        { "op": "set", "key": "kept", "value": "despite the failure" },
        { "op": "increment", "key": "attempts", "delta": 1 },
        { "op": "delete", "key": "old" },
    ]);
    let failed = host
        .post(
            "/acme/cache/run",
            Some(&token("cachey", "acme", &[])),
            &json!({ "ops": ops, "fail": true }),
        )
        .await?;
    failed.assert_problem(500);
    let after = run(
        &host,
        "acme",
        json!([
            { "op": "get", "key": "kept" },
            { "op": "get", "key": "attempts" },
            { "op": "get", "key": "old" },
        ]),
    )
    .await?;
    assert_eq!(after[0]["text"], "despite the failure");
    assert_eq!(after[1]["text"], "1");
    assert_eq!(after[2], Value::Null);
    host.stop().await?;
    Ok(())
}

/// Keys are 1-512 bytes without control characters and a TTL is not 0,
/// else `invalid`; a value over the per-entry maximum (1 MiB by default) is
/// `too-large`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_refuses_bad_keys_and_values_too_large() -> Result<()> {
    let host = TestHost::start().await?;
    let longest = "k".repeat(512);
    let results = run(
        &host,
        "acme",
        json!([
            { "op": "set", "key": "", "value": "v" },
            { "op": "set", "key": "bell\u{7}", "value": "v" },
            { "op": "set", "key": "line\nbreak", "value": "v" },
            { "op": "set", "key": "nul\u{0}", "value": "v" },
            { "op": "set", "key": "k".repeat(513), "value": "v" },
            { "op": "get", "key": "" },
            { "op": "increment", "key": "tab\t", "delta": 1 },
            { "op": "delete", "key": "k".repeat(513) },
            { "op": "set", "key": "zero-ttl", "value": "v", "ttl_ms": 0 },
            { "op": "set", "key": "huge", "size": (1 << 20) + 1 },
            { "op": "get", "key": "huge" },
            { "op": "set", "key": longest, "value": "longest" },
            { "op": "get", "key": longest },
            { "op": "set", "key": "ключ/🔑", "value": "unicode" },
            { "op": "get", "key": "ключ/🔑" },
            { "op": "set", "key": "half", "size": 512 * 1024 },
            { "op": "get", "key": "half" },
        ]),
    )
    .await?;
    for (i, result) in results[..9].iter().enumerate() {
        assert!(is_error(result, "invalid"), "op {i}: {result}");
    }
    assert!(is_error(&results[9], "too-large"), "{}", results[9]);
    assert_eq!(results[10], Value::Null, "a refused value is not stored");
    assert_eq!(results[12]["text"], "longest");
    assert_eq!(results[14]["text"], "unicode");
    assert_eq!(results[16]["size"], 512 * 1024);
    host.stop().await?;
    Ok(())
}

/// With `[cache] tenant_bytes` small, a tenant that writes far more than it
/// keeps at most that many bytes of values, and another tenant's entries
/// are all still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tenant_cache_evicts_only_its_own_entries() -> Result<()> {
    const BOUND: u64 = 64 * 1024;
    const VALUE: usize = 4096;
    let host = TestHost::start_with(TempDir::new()?, |c| c.cache.tenant_bytes = BOUND).await?;
    let others: Vec<Value> = (0..8)
        .map(|i| json!({ "op": "set", "key": format!("o{i}"), "size": 1024 }))
        .collect();
    run(&host, "other", Value::Array(others)).await?;

    // 200 values of 4 KiB: 800 KiB into a 64 KiB cache.
    for batch in 0..4 {
        let sets: Vec<Value> = (0..50)
            .map(|i| json!({ "op": "set", "key": format!("a{}", batch * 50 + i), "size": VALUE }))
            .collect();
        let results = run(&host, "acme", Value::Array(sets)).await?;
        assert!(results.iter().all(|r| r == "ok"), "{results:?}");
    }
    let gets = Value::Array(
        (0..200)
            .map(|i| json!({ "op": "get", "key": format!("a{i}") }))
            .collect(),
    );
    // Eviction may lag the writes a little; it must get there.
    let kept = eventually("acme's cache to shrink to its bound", || async {
        let results = run(&host, "acme", gets.clone()).await?;
        let bytes: u64 = results.iter().filter_map(|r| r["size"].as_u64()).sum();
        Ok((bytes <= BOUND).then_some(bytes))
    })
    .await?;
    assert!(kept > 0, "the cache still holds some of acme's entries");

    let survivors = run(
        &host,
        "other",
        Value::Array(
            (0..8)
                .map(|i| json!({ "op": "get", "key": format!("o{i}") }))
                .collect(),
        ),
    )
    .await?;
    for (i, result) in survivors.iter().enumerate() {
        assert_eq!(result["size"], 1024, "other's o{i} was evicted");
    }
    host.stop().await?;
    Ok(())
}

/// The todo example's `GET /todos/count`: counted by listing, then served
/// from the cache for a few seconds, and counted afresh after the owner
/// creates or deletes a todo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todo_counts_are_cached_until_the_owner_changes_a_todo() -> Result<()> {
    let host = TestHost::start().await?;
    let carol = token("carol", "demo", &[]);
    let dave = token("dave", "demo", &[]);
    let count = |who: &str| {
        let who = who.to_owned();
        let host = &host;
        async move {
            let reply = host.get("/demo/todos/count", Some(&who)).await?;
            ensure!(
                reply.status == 200,
                "count answered {}: {}",
                reply.status,
                reply.body
            );
            Ok::<_, anyhow::Error>(reply.body)
        }
    };

    assert_eq!(count(&carol).await?, json!({ "count": 0, "cached": false }));
    // The entry lives 5 seconds: the next call, right after, is served from it.
    assert_eq!(count(&carol).await?, json!({ "count": 0, "cached": true }));
    let mut ids = Vec::new();
    for title in ["one", "two"] {
        let created = host
            .post("/demo/todos", Some(&carol), &json!({ "title": title }))
            .await?;
        assert_eq!(created.status, 201, "body: {}", created.body);
        ids.push(created.body["id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(count(&carol).await?, json!({ "count": 2, "cached": false }));
    assert_eq!(count(&carol).await?, json!({ "count": 2, "cached": true }));
    // Someone else's todos and counts are their own.
    assert_eq!(count(&dave).await?, json!({ "count": 0, "cached": false }));

    let first = ids.first().context("no todo was created")?;
    let deleted = host
        .send(
            host.client
                .request(Method::DELETE, host.url(&format!("/demo/todos/{first}")))
                .bearer_auth(&carol),
        )
        .await?;
    assert_eq!(deleted.status, 204);
    assert_eq!(count(&carol).await?, json!({ "count": 1, "cached": false }));
    // The other routes are unchanged: `count` is not taken for an id.
    let listed = host.get("/demo/todos", Some(&carol)).await?;
    assert_eq!(listed.body["todos"].as_array().map(Vec::len), Some(1));
    host.stop().await?;
    Ok(())
}
