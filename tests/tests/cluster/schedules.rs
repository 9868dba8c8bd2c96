//! Schedules are shared: a tick fires once across the cluster, not once
//! per node.
//!
//! The `ticker` guest (in `tests/scheduled/`) reads `ticks/<tick_ms>` and
//! writes it back counted, so a tick fired twice leaves version 2; the
//! `probe` guest reads the collection back (same tenant, `acme`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_tests::{eventually, root, token};

use crate::node::{Cluster, Node, guests};

fn now_ms() -> Result<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis(),
    )?)
}

/// The ticks recorded so far: (tick_ms, version of its document), in order.
async fn ticks(node: &Node) -> Result<Vec<(i64, i64)>> {
    let acme = token("ops", "acme", &[]);
    let probe =
        |get: &[String]| json!({"collection": "ticks", "prefix": "", "limit": 1000, "get": get});
    let listed = node
        .post("/acme/probe/documents", &acme, &probe(&[]))
        .await?;
    assert_eq!(listed.status, 200, "body: {}", listed.body);
    let keys: Vec<String> = listed.body["pages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    let read = node
        .post("/acme/probe/documents", &acme, &probe(&keys))
        .await?;
    assert_eq!(read.status, 200, "body: {}", read.body);
    let mut ticks = Vec::new();
    for got in read.body["got"].as_array().into_iter().flatten() {
        let key = got["key"].as_str().context("tick key")?;
        let version = got["version"].as_i64().context("tick version")?;
        ticks.push((key.parse()?, version));
    }
    ticks.sort_unstable();
    Ok(ticks)
}

/// With both nodes running the per-second schedule for about five seconds,
/// every tick fires once (its document has version 1), on a whole second,
/// and the ticks in the window match the seconds elapsed, within one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_second_schedule_fires_once_per_tick_across_both_nodes() -> Result<()> {
    let dirs = [guests(), root().join("tests/scheduled")];
    let cluster = Cluster::start(&dirs, "").await?;
    eventually("a first tick", || async {
        Ok((!ticks(&cluster.a).await?.is_empty()).then_some(()))
    })
    .await?;

    let from = now_ms()?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let to = now_ms()?;
    // A tick is handled a little after its second: let the last ones commit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = ticks(&cluster.b).await?;

    for (tick, version) in &all {
        assert_eq!(*version, 1, "tick {tick} fired more than once: {all:?}");
        assert_eq!(tick % 1000, 0, "ticks fall on whole seconds: {all:?}");
    }
    let fired = all.iter().filter(|(t, _)| (from..to).contains(t)).count();
    // Whole seconds in [from, to).
    let seconds = (to + 999).div_euclid(1000) - (from + 999).div_euclid(1000);
    eprintln!(
        "{fired} ticks in {} ms ({seconds} whole seconds)",
        to - from
    );
    assert!(
        (i64::try_from(fired)? - seconds).abs() <= 1,
        "{fired} ticks in {seconds} seconds: {all:?}"
    );
    Ok(())
}
