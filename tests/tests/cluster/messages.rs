//! Messages are shared: both nodes consume one queue, each message's effect
//! commits once, and a node killed mid-message loses nothing.
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

/// A node killed with SIGKILL while both consume a backlog loses nothing:
/// once its leases run out (`lease_ms` 2000), the other node handles what
/// it held, and every effect still commits exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_message() -> Result<()> {
    let n = 4_000;
    let cluster = Cluster::start(&[guests()], "[queue]\nlease_ms = 2000\n").await?;
    let key = cluster.operator_key()?;
    produce(&cluster, "k", n).await?;

    let every = Duration::from_millis(50);
    let b = &cluster.b;
    let by_b =
        sluice_tests::poll_until("node B to handle messages", every, DRAIN_GUARD, || async {
            let by_b = handled(b, &key).await?;
            Ok((by_b >= 100.0).then_some(by_b))
        })
        .await?;
    let Cluster { a, b, .. } = cluster;
    let backlog = sample(&a.metrics(&key).await?, DEPTH)?;
    b.kill()?;
    let by_a = handled(&a, &key).await?;
    eprintln!("at the kill: node B had handled {by_b}, node A {by_a}, {backlog} waiting");
    assert!(
        backlog > 0.0,
        "the backlog drained before node B was killed: send more"
    );

    drained(&a, &key).await?;
    let effects = assert_each_once(&a, &key, "k", n).await?;
    assert!(handled(&a, &key).await? > by_a, "node A stopped consuming");
    // B held leases when it died: those messages ran again, on A.
    let again = effects
        .values()
        .filter(|e| e["attempts"] != json!([1]))
        .count();
    eprintln!("{again} messages were delivered again after the kill");
    assert!(again > 0, "no message node B held was delivered again");
    Ok(())
}
