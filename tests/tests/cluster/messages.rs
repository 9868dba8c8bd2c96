//! Messages are shared: every node consumes one queue, each message's
//! effect commits once, a node killed mid-message loses nothing, and one
//! tenant's backlog does not hold up another's.
//!
//! The `consumer` guest's `record` job reads `effects/<key>` and writes it
//! back with `count` + 1, so an effect committed twice shows `count` 2.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_tests::token;

use crate::node::{Cluster, Node, guests, sample};

/// Messages per send: one invocation, one commit (the default `messages`
/// limit is 1,000).
const BATCH: usize = 500;

/// How long a backlog may take to drain on two slow cores: a hang guard.
const DRAIN_GUARD: Duration = Duration::from_secs(180);

const HANDLED: &str = r#"sluice_messages_total{tenant="acme",function="consumer",outcome="ok"}"#;
const DEPTH: &str = r#"sluice_queue_depth{tenant="acme",function="consumer"}"#;
const DEAD: &str = r#"sluice_dead_letters{tenant="acme",function="consumer"}"#;
const RUNNING: &str = "sluice_instances_in_use";

fn acme() -> String {
    token("ops", "acme", &[])
}

/// The key of message `i` of a run named `run`.
fn key(run: &str, i: usize) -> String {
    format!("{run}-{i:05}")
}

/// Sends `n` `record` jobs, in batches, alternately through A and B.
async fn produce(cluster: &Cluster, run: &str, n: usize) -> Result<()> {
    let token = acme();
    for (batch, start) in (0..n).step_by(BATCH).enumerate() {
        let node = if batch % 2 == 0 {
            &cluster.a
        } else {
            &cluster.b
        };
        let payloads: Vec<Value> = (start..n.min(start + BATCH))
            .map(|i| json!({"op": "record", "key": key(run, i)}))
            .collect();
        let body = json!({"topic": "jobs", "payloads": payloads});
        let reply = node.post("/acme/consumer/send-many", &token, &body).await?;
        assert_eq!(reply.status, 202, "node {}: {}", node.name, reply.body);
    }
    Ok(())
}

/// Messages of the consumer this node ran to a successful end.
async fn handled(node: &Node, key: &str) -> Result<f64> {
    sample(&node.metrics(key).await?, HANDLED)
}

/// Waits until no delivery of the consumer is waiting or running.
async fn drained(node: &Node, key: &str) -> Result<()> {
    let every = Duration::from_millis(250);
    sluice_tests::poll_until("the queue to drain", every, DRAIN_GUARD, || async {
        let depth = sample(&node.metrics(key).await?, DEPTH)?;
        Ok((depth == 0.0).then_some(()))
    })
    .await
    .with_context(|| format!("node {}'s log:\n{}", node.name, node.log_tail()))
}

/// Every effect the consumer committed, by key.
async fn effects(node: &Node) -> Result<BTreeMap<String, Value>> {
    let reply = node.get("/acme/consumer/effects", Some(&acme())).await?;
    assert_eq!(reply.status, 200, "node {}: {}", node.name, reply.body);
    let all = reply.body.as_array().context("effects are not a list")?;
    Ok(all
        .iter()
        .filter_map(|e| Some((e["key"].as_str()?.to_owned(), e["value"].clone())))
        .collect())
}

/// Asserts that the `n` messages of run `run` each committed their effect
/// exactly once, and that nothing went to the dead letters. Returns the
/// effects.
async fn assert_each_once(
    node: &Node,
    operator: &str,
    run: &str,
    n: usize,
) -> Result<BTreeMap<String, Value>> {
    let effects = effects(node).await?;
    let missing: Vec<String> = (0..n)
        .map(|i| key(run, i))
        .filter(|k| !effects.contains_key(k))
        .collect();
    let twice: Vec<(&String, &Value)> = effects.iter().filter(|(_, e)| e["count"] != 1).collect();
    assert!(
        missing.is_empty(),
        "{} of {n} effects missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        twice.is_empty(),
        "{} effects committed more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(effects.len(), n, "effects of no message");
    let dead = sample(&node.metrics(operator).await?, DEAD)?;
    assert_eq!(dead, 0.0, "messages went to the dead letters");
    Ok(effects)
}

/// 10,000 messages sent through both nodes are consumed by both, and each
/// effect commits exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_are_shared_and_each_handled_once() -> Result<()> {
    let n = 10_000;
    let cluster = Cluster::start(&[guests()], "").await?;
    let key = cluster.operator_key()?;
    produce(&cluster, "m", n).await?;
    drained(&cluster.a, &key).await?;

    assert_each_once(&cluster.a, &key, "m", n).await?;
    let (by_a, by_b) = (
        handled(&cluster.a, &key).await?,
        handled(&cluster.b, &key).await?,
    );
    eprintln!("messages handled: node A {by_a}, node B {by_b}");
    assert!(
        by_a > 0.0 && by_b > 0.0,
        "one node did all the work: A {by_a}, B {by_b}"
    );
    // A run whose commit lost its lease may count too, hence at least.
    assert!(by_a + by_b >= n as f64, "A {by_a} + B {by_b} < {n}");
    Ok(())
}

/// A node killed with SIGKILL while three consume a backlog loses nothing:
/// once its leases run out (`lease_ms` 2000), the other nodes handle what
/// it held, both carry on, and every effect still commits exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_message() -> Result<()> {
    let n = 4_000;
    let config = "[queue]\nlease_ms = 2000\n";
    let cluster = Cluster::start(&[guests()], config).await?;
    let c = cluster.another("C", &[guests()], config)?;
    let key = cluster.operator_key()?;
    produce(&cluster, "k", n).await?;

    let every = Duration::from_millis(50);
    let b = &cluster.b;
    // Killed while it runs consumers, so it dies holding their leases.
    let what = "node B to handle messages, with some running";
    let by_b = sluice_tests::poll_until(what, every, DRAIN_GUARD, || async {
        let metrics = b.metrics(&key).await?;
        let (by_b, running) = (sample(&metrics, HANDLED)?, sample(&metrics, RUNNING)?);
        Ok((by_b >= 100.0 && running >= 4.0).then_some(by_b))
    })
    .await?;
    let Cluster { a, b, .. } = cluster;
    let backlog = sample(&a.metrics(&key).await?, DEPTH)?;
    b.kill()?;
    let (by_a, by_c) = (handled(&a, &key).await?, handled(&c, &key).await?);
    eprintln!("at the kill: node B had handled {by_b}, A {by_a}, C {by_c}; {backlog} waiting");
    assert!(
        backlog > 0.0,
        "the backlog drained before node B was killed: send more"
    );

    drained(&a, &key).await?;
    let effects = assert_each_once(&a, &key, "k", n).await?;
    assert!(handled(&a, &key).await? > by_a, "node A stopped consuming");
    assert!(handled(&c, &key).await? > by_c, "node C stopped consuming");
    // B held leases when it died: those messages ran again, on A or C.
    let again = effects
        .values()
        .filter(|e| e["attempts"] != json!([1]))
        .count();
    eprintln!("{again} messages were delivered again after the kill");
    assert!(again > 0, "no message node B held was delivered again");
    Ok(())
}

/// Fair across tenants on three nodes: with 100,000 of acme's messages
/// sent, the 100 that tenant `fair` sends next are all handled within 10 s,
/// while acme's backlog is still draining.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_backlog_does_not_delay_another_tenant_on_three_nodes() -> Result<()> {
    let config = "[queue]\nmax_concurrency = 4\n";
    let cluster = Cluster::start(&[guests()], config).await?;
    let _c = cluster.another("C", &[guests()], config)?;
    let key = cluster.operator_key()?;
    let dir = tempfile::TempDir::new()?;
    let deploy = sluice_tests::consumer_deploy(dir.path(), "fair")?;
    cluster.cli(&key, &["tenant", "create", "fair"])?;
    cluster.cli(&key, &deploy.iter().map(String::as_str).collect::<Vec<_>>())?;

    // acme's backlog, sent through A and B.
    let payloads: Vec<Value> = (0..1000).map(|i| json!({ "n": i })).collect();
    let batch = json!({ "topic": "bench", "payloads": payloads });
    for i in 0..100 {
        let node = if i % 2 == 0 { &cluster.a } else { &cluster.b };
        let reply = node
            .post("/acme/consumer/send-many", &acme(), &batch)
            .await?;
        assert_eq!(reply.status, 202, "node {}: {}", node.name, reply.body);
    }
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&cluster.database).await?;
    let count = |sql: &'static str| {
        let db = &db;
        async move { Ok::<i64, anyhow::Error>(sqlx::query_scalar(sql).fetch_one(db).await?) }
    };
    let backlog = "SELECT count(*) FROM deliveries WHERE tenant = 'acme'";
    let waiting = count(backlog).await?;
    assert!(waiting > 20_000, "acme's backlog is long: {waiting}");

    let started = std::time::Instant::now();
    let jobs: Vec<Value> = (0..100)
        .map(|i| json!({ "op": "record", "key": format!("fair-{i}") }))
        .collect();
    let body = json!({ "topic": "jobs", "payloads": jobs });
    let reply = cluster
        .a
        .post(
            "/fair/consumer/send-many",
            &token("ops", "fair", &[]),
            &body,
        )
        .await?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let handled = "SELECT count(*) FROM documents WHERE tenant = 'fair' AND collection = 'effects'";
    let what = "fair's 100 messages, not behind acme's backlog";
    let every = Duration::from_millis(100);
    let left = sluice_tests::poll_until(what, every, Duration::from_secs(10), || async {
        let left = count(backlog).await?;
        Ok((count(handled).await? == 100).then_some(left))
    })
    .await?;
    eprintln!(
        "fair's 100 handled in {:?}, {left} of acme's left",
        started.elapsed()
    );
    assert!(left > 0, "acme's backlog was still draining");
    Ok(())
}
