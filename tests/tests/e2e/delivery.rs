//! After the response: queue messages, document events and schedules reach
//! consumer functions at least once, and their effects commit exactly once.
//!
//! The `consumer` test guest (tenant `acme`) records every message it
//! handles in its collection `effects`; `outsider` (tenant `other`)
//! subscribes to the same topic names and must never see `acme`'s messages.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_tests::{Process, TestHost, count, document, eventually, root, sluice_command, token};
use tempfile::TempDir;

fn acme() -> String {
    token("ops", "acme", &[])
}

/// Sends a `jobs` message through the consumer's HTTP route.
async fn send(host: &TestHost, payload: Value, options: Value) -> Result<()> {
    let mut body = json!({"topic": "jobs", "payload": payload});
    if let (Some(body), Some(options)) = (body.as_object_mut(), options.as_object()) {
        body.extend(options.clone());
    }
    let reply = host
        .post("/acme/consumer/send", Some(&acme()), &body)
        .await?;
    assert_eq!(reply.status.as_u16(), 202, "body: {}", reply.body);
    Ok(())
}

/// Waits for the effect the consumer records at `effects/<key>`.
async fn effect(data: &Path, key: &str) -> Result<Value> {
    eventually(&format!("effect {key}"), || {
        document(data, "acme", "effects", key)
    })
    .await
}

/// The consumer's invocation records for messages, oldest first: (outcome, created_at).
async fn consumer_runs(host: &TestHost) -> Result<Vec<(String, i64)>> {
    let db = host.db().await?;
    let rows = sqlx::query_as(
        "SELECT outcome, created_at FROM invocations \
         WHERE tenant = 'acme' AND function = 'consumer' AND route = 'message jobs' \
         ORDER BY created_at",
    )
    .fetch_all(&db)
    .await?;
    db.close().await;
    Ok(rows)
}

/// A message sent by an HTTP write is handled after the response, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_message_is_consumed_after_the_response() -> Result<()> {
    let host = TestHost::start().await?;
    // The consumer stages its effect, then stays busy for 1.5 s before it
    // can commit: had the response waited for it, the effect would be there.
    send(
        &host,
        json!({"op": "slow", "key": "after", "ms": 1500}),
        json!({}),
    )
    .await?;
    assert_eq!(
        document(host.data(), "acme", "effects", "after").await?,
        None
    );

    let done = effect(host.data(), "after").await?;
    assert_eq!(done["count"], 1);
    assert_eq!(done["attempts"], json!([1]));
    let pending = count(
        host.data(),
        "SELECT count(*) FROM deliveries WHERE tenant = 'acme'",
        &[],
    )
    .await?;
    assert_eq!(pending, 0, "a handled delivery is removed with its effects");
    host.stop().await?;
    Ok(())
}

/// A consumer that fails twice is run three times, with backoff between
/// the attempts, and its effect happens once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_consumer_is_retried_with_backoff() -> Result<()> {
    let host = TestHost::start().await?;
    send(
        &host,
        json!({"op": "flaky", "key": "flaky", "fail_times": 2}),
        json!({}),
    )
    .await?;
    let done = effect(host.data(), "flaky").await?;
    assert_eq!(done["count"], 1);
    assert_eq!(done["attempts"], json!([3]));

    let runs = eventually("three recorded runs", || async {
        let runs = consumer_runs(&host).await?;
        Ok((runs.len() >= 3).then_some(runs))
    })
    .await?;
    let outcomes: Vec<&str> = runs.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(outcomes, ["retry", "retry", "ok"]);
    // backoff_ms = 300, doubling, with equal jitter: at least 150 ms before
    // the second attempt and 300 ms before the third, counted from just
    // before the failed attempt's commit (hence the margin).
    assert!(runs[1].1 - runs[0].1 >= 130, "runs: {runs:?}");
    assert!(runs[2].1 - runs[1].1 >= 280, "runs: {runs:?}");
    host.stop().await?;
    Ok(())
}

/// Whether a message payload mentions `text`. Matched here, not in SQL:
/// casting a blob to text is SQLite's, PostgreSQL's differs.
fn mentions(payload: &[u8], text: &str) -> bool {
    String::from_utf8_lossy(payload).contains(text)
}

/// The dead letter of `key`'s message: (id, attempts, last error).
async fn dead_letter(host: &TestHost, key: &str) -> Result<(String, i64, String)> {
    eventually(&format!("dead letter for {key}"), || async {
        let db = host.db().await?;
        let rows: Vec<(String, i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT d.id, d.attempts, d.last_error, o.payload FROM dead_letters d \
             JOIN outbox o ON o.id = d.message_id \
             WHERE d.function = 'consumer'",
        )
        .fetch_all(&db)
        .await?;
        db.close().await;
        Ok(rows
            .into_iter()
            .find(|(.., payload)| mentions(payload, key))
            .map(|(id, attempts, error, _)| (id, attempts, error)))
    })
    .await
}

/// A message that always fails goes to the dead letters after
/// `max_attempts` (3) with its error; `sluice dead-letters replay` delivers
/// it again. A consumer that gives up sends it there at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_become_dead_letters_and_replay() -> Result<()> {
    let host = TestHost::start().await?;
    send(&host, json!({"op": "poison", "key": "poison"}), json!({})).await?;
    send(
        &host,
        json!({"op": "give-up", "key": "hopeless"}),
        json!({}),
    )
    .await?;

    let (id, attempts, error) = dead_letter(&host, "poison").await?;
    assert_eq!(attempts, 3);
    assert!(error.contains("poison message poison"), "error: {error}");
    let (_, attempts, error) = dead_letter(&host, "hopeless").await?;
    assert_eq!(attempts, 1);
    assert!(error.contains("cannot handle hopeless"), "error: {error}");

    let listed = sluice_command(host.data())?
        .args(["dead-letters", "list", "--tenant", "acme", "--json"])
        .output()?;
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8(listed.stdout)?;
    assert!(
        listed.contains(&id) && listed.contains("poison message"),
        "{listed}"
    );

    let replayed = sluice_command(host.data())?
        .args(["dead-letters", "replay", &id])
        .output()?;
    assert!(replayed.status.success(), "{replayed:?}");
    assert!(String::from_utf8(replayed.stdout)?.contains("1 message(s) queued again"));
    // Delivered again from attempt 1: three more runs, then dead again.
    eventually("the replayed message to run out of attempts", || async {
        let runs = consumer_runs(&host).await?;
        let retries = runs.iter().filter(|(o, _)| o == "retry").count();
        let dead = count(
            host.data(),
            "SELECT count(*) FROM dead_letters WHERE id = $1",
            &[&id],
        )
        .await?;
        Ok((retries == 6 && dead == 1).then_some(()))
    })
    .await?;
    assert_eq!(
        document(host.data(), "acme", "effects", "poison").await?,
        None
    );
    host.stop().await?;
    Ok(())
}

/// A consumer whose staged write is followed by a failure commits nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_commits_nothing_it_staged() -> Result<()> {
    let host = TestHost::start().await?;
    send(
        &host,
        json!({"op": "stage-then-fail", "key": "staged"}),
        json!({}),
    )
    .await?;
    dead_letter(&host, "staged").await?;
    assert_eq!(
        document(host.data(), "acme", "effects", "staged").await?,
        None
    );
    host.stop().await?;
    Ok(())
}

/// A delayed message is not handled before its time; a second send with the
/// same idempotency key is dropped, until the key's window has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_are_honoured_and_duplicates_dropped() -> Result<()> {
    let host = TestHost::start_with(TempDir::new()?, |c| {
        c.queue.idempotency_window_secs = 2;
    })
    .await?;
    send(
        &host,
        json!({"op": "record", "key": "late"}),
        json!({"delay_ms": 1500}),
    )
    .await?;
    let dup = json!({"idempotency_key": "once"});
    send(&host, json!({"op": "record", "key": "first"}), dup.clone()).await?;
    send(&host, json!({"op": "record", "key": "second"}), dup.clone()).await?;

    effect(host.data(), "late").await?;
    let db = host.db().await?;
    let messages: Vec<(i64, Vec<u8>)> = sqlx::query_as("SELECT created_at, payload FROM outbox")
        .fetch_all(&db)
        .await?;
    let sent = messages
        .into_iter()
        .find(|(_, payload)| mentions(payload, "\"late\""))
        .map(|(created_at, _)| created_at)
        .context("no outbox row for the late message")?;
    let handled: i64 = sqlx::query_scalar(
        "SELECT created_at FROM invocations \
         WHERE function = 'consumer' AND outcome = 'ok' AND created_at >= $1 \
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(sent)
    .fetch_one(&db)
    .await?;
    db.close().await;
    assert!(
        handled - sent >= 1500,
        "handled {} ms after the send",
        handled - sent
    );

    effect(host.data(), "first").await?;
    assert_eq!(
        document(host.data(), "acme", "effects", "second").await?,
        None
    );
    let keyed = "SELECT count(*) FROM outbox WHERE idempotency_key = 'once'";
    assert_eq!(count(host.data(), keyed, &[]).await?, 1);

    // Past the window, the key is free again.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    send(&host, json!({"op": "record", "key": "third"}), dup).await?;
    effect(host.data(), "third").await?;
    host.stop().await?;
    Ok(())
}

/// A host killed while a consumer is mid-flight loses nothing: after a
/// restart the message is delivered again and its effect happens once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_delivers_again_exactly_once() -> Result<()> {
    let data = TempDir::new()?;
    let dirs = [root().join("tests/guests")];
    // On SQLite the restarted host releases the dead one's lease at once; on
    // PostgreSQL it cannot tell a dead node's lease from a live one's and
    // waits for it to expire: a short lease, longer than the 4 s run.
    let lease = "[queue]\nlease_ms = 10000\n";
    let process = Process::start_with(data.path(), &dirs, lease)?;
    let client = reqwest::Client::new();
    let sent = client
        .post(format!("{}/acme/consumer/send", process.base))
        .bearer_auth(acme())
        .json(&json!({"topic": "jobs", "payload": {"op": "slow", "key": "crash", "ms": 4000}}))
        .send()
        .await?;
    assert_eq!(sent.status().as_u16(), 202);

    // Mid-flight: leased by the host, not yet committed.
    eventually("the delivery to be leased", || async {
        let leased = "SELECT count(*) FROM deliveries WHERE lease_token IS NOT NULL";
        Ok((count(data.path(), leased, &[]).await? == 1).then_some(()))
    })
    .await?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    process.kill()?;
    assert_eq!(
        document(data.path(), "acme", "effects", "crash").await?,
        None
    );

    let process = Process::start_with(data.path(), &dirs, lease)?;
    let done = effect(data.path(), "crash").await?;
    assert_eq!(done["count"], 1, "effect: {done}");
    assert_eq!(done["attempts"], json!([2]), "the killed run was attempt 1");
    eventually("the delivery to be removed", || async {
        Ok((count(data.path(), "SELECT count(*) FROM deliveries", &[]).await? == 0).then_some(()))
    })
    .await?;
    drop(process);
    Ok(())
}

/// Document changes reach the subscribers of the writer's tenant as
/// created, updated and deleted events, never another tenant's subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_events_reach_only_their_tenant() -> Result<()> {
    let host = TestHost::start().await?;
    let note = "/acme/consumer/notes/n1";
    for body in [json!({"v": 1}), json!({"v": 2})] {
        let put = host
            .send_json(reqwest::Method::PUT, note, Some(&acme()), &body)
            .await?;
        assert_eq!(put.status.as_u16(), 200, "body: {}", put.body);
    }
    let deleted = host
        .send(host.client.delete(host.url(note)).bearer_auth(acme()))
        .await?;
    assert_eq!(deleted.status.as_u16(), 200);
    send(&host, json!({"op": "record", "key": "job"}), json!({})).await?;

    for (version, kind) in [(1, "created"), (2, "updated"), (3, "deleted")] {
        let event = effect(host.data(), &format!("event-notes-n1-{version}")).await?;
        assert_eq!(event["kind"], kind);
        assert_eq!(event["topic"], format!("documents.notes.{kind}"));
    }
    effect(host.data(), "job").await?;
    let data = host.stop().await?;
    let theirs = "SELECT count(*) FROM documents WHERE tenant = 'other'";
    assert_eq!(count(data.path(), theirs, &[]).await?, 0);
    let runs = "SELECT count(*) FROM invocations WHERE function = 'outsider'";
    assert_eq!(count(data.path(), runs, &[]).await?, 0);
    let deliveries = "SELECT count(*) FROM deliveries WHERE tenant = 'other'";
    assert_eq!(count(data.path(), deliveries, &[]).await?, 0);
    Ok(())
}

/// The ticks the `ticker` guest recorded: (tick_ms, count, missed), in order.
async fn ticks(data: &Path) -> Result<Vec<(i64, i64, i64)>> {
    let db = sluice_tests::db(data).await?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT key, value FROM documents WHERE tenant = 'acme' AND collection = 'ticks'",
    )
    .fetch_all(&db)
    .await?;
    db.close().await;
    let mut ticks = Vec::new();
    for (key, value) in rows {
        let v: Value = serde_json::from_str(&value)?;
        let field = |name: &str| v[name].as_i64().context("tick field");
        ticks.push((key.parse()?, field("count")?, field("missed")?));
    }
    ticks.sort_unstable();
    Ok(ticks)
}

/// A per-second schedule fires every second while the host runs (each
/// second is either fired or counted as missed), each tick once, and a
/// restart does not fire a tick twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_second_schedule_fires_each_tick_once() -> Result<()> {
    let with_ticker = |c: &mut sluice_host::Config| {
        c.functions_dirs.push(root().join("tests/scheduled"));
    };
    let host = TestHost::start_with(TempDir::new()?, with_ticker).await?;
    let first = eventually("four ticks", || async {
        let ticks = ticks(host.data()).await?;
        Ok((ticks.len() >= 4).then_some(ticks))
    })
    .await?;
    let data = host.stop().await?;
    let before = ticks(data.path()).await?;
    assert!(before.len() >= first.len());

    let host = TestHost::start_with(data, with_ticker).await?;
    eventually("two ticks after the restart", || async {
        let ticks = ticks(host.data()).await?;
        Ok((ticks.len() >= before.len() + 2).then_some(()))
    })
    .await?;
    let data = host.stop().await?;
    let all = ticks(data.path()).await?;

    for (tick, count, _) in &all {
        assert_eq!(*count, 1, "tick {tick} fired more than once: {all:?}");
        assert_eq!(tick % 1000, 0, "ticks fall on whole seconds: {all:?}");
    }
    // While the host runs, every second is accounted for.
    for pair in before.windows(2) {
        let ((a, _, _), (b, _, missed)) = (pair[0], pair[1]);
        assert_eq!(b - a, 1000 * (1 + missed), "ticks: {before:?}");
    }
    let restarted = &all[before.len()..];
    assert!(
        restarted[0].0 > before[before.len() - 1].0,
        "ticks: {all:?}"
    );
    Ok(())
}

/// Past `max_pending_per_tenant` deliveries waiting, a tenant's sends are
/// refused until its consumers catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_sends_until_consumers_catch_up() -> Result<()> {
    let host = TestHost::start_with(TempDir::new()?, |c| {
        c.queue.max_pending_per_tenant = 2;
    })
    .await?;
    for key in ["busy-1", "busy-2"] {
        send(
            &host,
            json!({"op": "slow", "key": key, "ms": 1000}),
            json!({}),
        )
        .await?;
    }
    let body = json!({"topic": "jobs", "payload": {"op": "record", "key": "refused"}});
    let refused = host
        .post("/acme/consumer/send", Some(&acme()), &body)
        .await?;
    refused.assert_problem(500);
    let detail = refused.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("queue is full"), "detail: {detail}");

    effect(host.data(), "busy-1").await?;
    effect(host.data(), "busy-2").await?;
    eventually("the queue to drain", || async {
        let pending = count(
            host.data(),
            "SELECT count(*) FROM deliveries WHERE tenant = 'acme'",
            &[],
        )
        .await?;
        Ok((pending == 0).then_some(()))
    })
    .await?;
    send(&host, json!({"op": "record", "key": "accepted"}), json!({})).await?;
    effect(host.data(), "accepted").await?;
    assert_eq!(
        document(host.data(), "acme", "effects", "refused").await?,
        None
    );
    host.stop().await?;
    Ok(())
}

/// A consumer that sends to its own topic runs `[queue] max_hops` times
/// and no more: the next message in the chain goes to the dead letters as
/// `loop-detected`, unhandled, and its run is recorded as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_feeding_itself_stops_at_max_hops() -> Result<()> {
    let host = TestHost::start_with(TempDir::new()?, |config| config.queue.max_hops = 4).await?;
    send(&host, json!({"op": "loop", "key": "looping"}), json!({})).await?;
    let (_, attempts, error) = dead_letter(&host, "looping").await?;
    assert_eq!(attempts, 1);
    assert!(error.starts_with("loop-detected"), "error: {error}");
    let effect = effect(host.data(), "looping").await?;
    // Hops 0 to 3 ran; the message of hop 4 did not.
    assert_eq!(effect["count"], 4, "{effect}");
    let loops = count(
        host.data(),
        "SELECT count(*) FROM invocations WHERE function = 'consumer' AND outcome = 'loop-detected'",
        &[],
    )
    .await?;
    assert_eq!(loops, 1);
    // Nothing more runs after the chain is cut.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let effect = document(host.data(), "acme", "effects", "looping").await?;
    assert_eq!(effect.map(|e| e["count"].clone()), Some(json!(4)));
    host.stop().await?;
    Ok(())
}

/// A tenant with a long backlog does not hold up another's messages: the
/// host's delivery slots go to tenants in turn. Tenant `acme` queues
/// 100,000 messages for a consumer allowed more than all of the host's
/// slots; tenant `fair` then sends 100, which are all handled within a few
/// seconds, long before `acme`'s backlog has drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_backlog_does_not_delay_another_tenants_messages() -> Result<()> {
    let host = TestHost::start_with(TempDir::new()?, |c| c.queue.max_concurrency = 4).await?;
    let key = sluice_tests::operator_key(&host)?;
    let deploy = sluice_tests::consumer_deploy(host.data(), "fair")?;
    let deploy: Vec<&str> = deploy.iter().map(String::as_str).collect();
    for args in [&["tenant", "create", "fair"][..], &deploy] {
        let out = sluice_tests::sluice(&host, Some(&key), args)?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // acme's backlog: its consumer may run 32 at once, the host 4.
    let payloads: Vec<Value> = (0..1000).map(|i| json!({ "n": i })).collect();
    let batch = json!({ "topic": "bench", "payloads": payloads });
    for _ in 0..100 {
        let reply = host
            .post("/acme/consumer/send-many", Some(&acme()), &batch)
            .await?;
        assert_eq!(reply.status.as_u16(), 202, "body: {}", reply.body);
    }
    // acme's consumer drains a few thousand a second here: however slowly
    // the sends went, tens of thousands are still waiting.
    let backlog = "SELECT count(*) FROM deliveries WHERE tenant = 'acme'";
    let waiting = host.count(backlog, &[]).await?;
    assert!(waiting > 20_000, "acme's backlog is long: {waiting}");

    let jobs: Vec<Value> = (0..100)
        .map(|i| json!({ "op": "record", "key": format!("fair-{i}") }))
        .collect();
    let reply = host
        .post(
            "/fair/consumer/send-many",
            Some(&token("ops", "fair", &[])),
            &json!({ "topic": "jobs", "payloads": jobs }),
        )
        .await?;
    assert_eq!(reply.status.as_u16(), 202, "body: {}", reply.body);
    let handled = "SELECT count(*) FROM documents WHERE tenant = 'fair' AND collection = 'effects'";
    let every = std::time::Duration::from_millis(100);
    let guard = std::time::Duration::from_secs(10);
    let what = "fair's 100 messages, not behind acme's backlog";
    let left = sluice_tests::poll_until(what, every, guard, || async {
        let left = host.count(backlog, &[]).await?;
        Ok((host.count(handled, &[]).await? == 100).then_some(left))
    })
    .await?;
    assert!(left > 0, "acme's backlog was still draining");
    host.stop().await?;
    Ok(())
}

/// The admin API lists, shows and replays dead letters; the invocation
/// records filter by outcome and page by cursor; the last hour's figures
/// count the requests and message runs, with the dead letters now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_figures_through_the_admin_api() -> Result<()> {
    use reqwest::Method;
    use sluice_tests::{admin, operator_key};

    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    send(
        &host,
        json!({"op": "give-up", "key": "hopeless"}),
        json!({}),
    )
    .await?;
    send(&host, json!({"op": "record", "key": "fine"}), json!({})).await?;
    let (id, ..) = dead_letter(&host, "hopeless").await?;
    let get = |path: String| {
        let (host, key) = (&host, key.clone());
        async move { admin(host, Method::GET, &path, Some(&key), None).await }
    };

    let listed = get("/v1/dead-letters?tenant=acme".into()).await?;
    assert_eq!(listed.status.as_u16(), 200, "{}", listed.body);
    let letters = listed.body["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(letters.len(), 1, "{}", listed.body);
    assert_eq!(letters[0]["id"], id.as_str());
    let shown = get(format!("/v1/dead-letters/{id}")).await?;
    assert!(
        shown.body["payload"]
            .as_str()
            .unwrap_or_default()
            .contains("hopeless")
    );
    assert!(
        shown.body["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot handle")
    );
    get("/v1/dead-letters/no-such-letter".into())
        .await?
        .assert_problem(404);
    let none = get("/v1/dead-letters?tenant=other".into()).await?;
    assert_eq!(none.body["dead_letters"], json!([]));

    let stats = get("/v1/stats".into()).await?;
    assert_eq!(stats.status.as_u16(), 200, "{}", stats.body);
    let minutes = stats.body["minutes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let acme: Vec<&Value> = (minutes.iter())
        .flat_map(|m| m["tenants"].as_array().into_iter().flatten())
        .filter(|t| t["tenant"] == "acme")
        .collect();
    let total = |field: &str| {
        acme.iter()
            .map(|t| t[field].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(total("requests"), 2, "{}", stats.body);
    assert!(total("message_failures") >= 1, "{}", stats.body);
    assert!(
        acme.iter().all(|t| t["p50_ms"].as_f64().is_some()),
        "{}",
        stats.body
    );
    let queue = (stats.body["queues"].as_array().into_iter().flatten())
        .find(|q| q["tenant"] == "acme" && q["function"] == "consumer")
        .cloned()
        .context("no queue figures for acme/consumer")?;
    assert_eq!(queue["dead_letters"], 1, "{}", stats.body);

    // The invocation records: filtered, one by id, paged.
    let gave_up = get("/v1/invocations?tenant=acme&outcome=give-up".into()).await?;
    let records = gave_up.body["invocations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(records.len(), 1, "{}", gave_up.body);
    let request_id = records[0]["request_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let one = get(format!("/v1/invocations/{request_id}")).await?;
    assert_eq!(one.body["outcome"], "give-up");
    // A delivery has no stages before its function; its run is timed.
    let stages = &one.body["stages"];
    assert!(stages["process"].as_u64().is_some(), "{}", one.body);
    assert!(stages.get("authenticate").is_none(), "{}", one.body);
    // A request has every stage up to the function.
    let sent = get("/v1/invocations?tenant=acme&outcome=ok".into()).await?;
    let request = (sent.body["invocations"].as_array().into_iter().flatten())
        .find(|r| r["route"].as_str().is_some_and(|r| r.starts_with("POST ")))
        .with_context(|| format!("no request among {}", sent.body))?;
    let stages = &request["stages"];
    for stage in ["receive", "authenticate", "validate", "process"] {
        assert!(stages[stage].as_u64().is_some(), "{stage}: {}", sent.body);
    }
    let sum: u64 = ["receive", "authenticate", "validate", "process"]
        .iter()
        .filter_map(|s| stages[*s].as_u64())
        .sum();
    let total = request["duration_us"].as_u64().unwrap_or(0);
    assert!(sum <= total, "stages {sum} µs within the whole {total} µs");
    get("/v1/invocations/no-such-request".into())
        .await?
        .assert_problem(404);
    get("/v1/invocations?status=abc".into())
        .await?
        .assert_problem(422);
    let first = get("/v1/invocations?tenant=acme&limit=1".into()).await?;
    let next = first.body["next"]
        .as_str()
        .context("a full page has a next cursor")?
        .to_owned();
    let second = get(format!("/v1/invocations?tenant=acme&limit=1&before={next}")).await?;
    assert_ne!(
        first.body["invocations"][0]["request_id"],
        second.body["invocations"][0]["request_id"]
    );

    // Replayed: delivered again, given up again.
    let replay = |path: String| {
        let (host, key) = (&host, key.clone());
        async move { admin(host, Method::POST, &path, Some(&key), None).await }
    };
    let replayed = replay(format!("/v1/dead-letters/{id}/replay")).await?;
    assert_eq!(replayed.body, json!({ "replayed": 1 }), "{}", replayed.body);
    replay("/v1/dead-letters/no-such-letter/replay".into())
        .await?
        .assert_problem(404);
    let other = replay("/v1/dead-letters/replay?tenant=other".into()).await?;
    assert_eq!(other.body, json!({ "replayed": 0 }));
    eventually("the replayed message to give up again", || async {
        let runs = consumer_runs(&host).await?;
        let gave_up = runs.iter().filter(|(o, _)| o == "give-up").count();
        let dead = count(host.data(), "SELECT count(*) FROM dead_letters", &[]).await?;
        Ok((gave_up == 2 && dead == 1).then_some(()))
    })
    .await?;
    admin(&host, Method::GET, "/v1/dead-letters", None, None)
        .await?
        .assert_problem(401);
    host.stop().await?;
    Ok(())
}
