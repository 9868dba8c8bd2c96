//! Deploys are shared: a version deployed through one node's admin API
//! serves on the other within a second.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::json;
use sluice_tests::{HANG_GUARD, root};

use crate::node::{Cluster, guests};

/// The echo guest behind a public GET route.
const WHO: &str = "[[routes]]\nmethod = \"GET\"\npath = \"/who/{a}\"\nauth = \"public\"\n";

/// Node A answers a deploy; node B, polled every 20 ms from that answer,
/// serves the new route within one second (the promise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_on_one_node_serves_on_the_other_within_a_second() -> Result<()> {
    let cluster = Cluster::start(&[guests()], "").await?;
    let (a, b) = (&cluster.a, &cluster.b);
    let key = cluster.operator_key()?;
    let created = sluice_tests::send(
        a.admin(Method::POST, "/v1/tenants", &key)
            .json(&json!({"name": "shop"})),
    )
    .await?;
    assert_eq!(created.status, 201, "body: {}", created.body);
    let before = b.get("/shop/who/x", None).await?;
    assert_eq!(before.status, 404, "body: {}", before.body);

    let path = root().join("target/wasm32-wasip2/guest/echo.wasm");
    let component = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let form = Form::new()
        .part("manifest", Part::text(WHO).file_name("sluice.toml"))
        .part(
            "component",
            Part::bytes(component).file_name("component.wasm"),
        );
    let deployed = sluice_tests::send(
        a.admin(
            Method::POST,
            "/v1/tenants/shop/functions/who/versions",
            &key,
        )
        .multipart(form),
    )
    .await?;
    let answered = Instant::now();
    assert_eq!(deployed.status, 201, "body: {}", deployed.body);

    let (served, took) = loop {
        let reply = b.get("/shop/who/x", None).await?;
        let took = answered.elapsed();
        if reply.status == 200 {
            break (reply, took);
        }
        if took > HANG_GUARD {
            bail!(
                "node B never served the deployed route: {} {}\nnode B's log:\n{}",
                reply.status,
                reply.body,
                b.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("node B served the deploy {took:?} after node A answered it");
    assert!(
        served.body.get("params").is_some(),
        "not the echo guest: {}",
        served.body
    );
    assert!(
        took < Duration::from_secs(1),
        "node B served the deploy {took:?} after node A answered it"
    );
    Ok(())
}

/// A configuration value or secret set through node A's admin API is what
/// the functions on node B read, within a second; so is its removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_set_on_one_node_is_read_on_the_other() -> Result<()> {
    let secrets = "[secrets]\nkey = \"6q3qkVpX7yGIEtV0gqXlAfY6w2pbqmoAq5lUF9uNvXo=\"\n";
    let cluster = Cluster::start(&[guests()], secrets).await?;
    let (a, b) = (&cluster.a, &cluster.b);
    let key = cluster.operator_key()?;
    let read_on_b = || async {
        let got = b.get("/acme/echo/x?config=API_KEY", None).await?;
        Ok::<_, anyhow::Error>(got.body["config"]["API_KEY"].clone())
    };
    assert_eq!(read_on_b().await?, serde_json::Value::Null);
    let set = sluice_tests::send(
        a.admin(Method::PUT, "/v1/tenants/acme/config/API_KEY", &key)
            .json(&json!({ "value": "sk_cluster", "secret": true })),
    )
    .await?;
    assert_eq!(set.status, 200, "body: {}", set.body);
    let answered = Instant::now();
    while read_on_b().await? != json!("sk_cluster") {
        if answered.elapsed() > Duration::from_secs(5) {
            bail!(
                "node B never read the secret\nnode B's log:\n{}",
                b.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "node B read the secret {:?} after node A set it",
        answered.elapsed()
    );
    assert!(answered.elapsed() < Duration::from_secs(1));
    cluster.cli(&key, &["tenant", "config", "unset", "acme", "API_KEY"])?;
    let unset = Instant::now();
    while read_on_b().await? != serde_json::Value::Null {
        if unset.elapsed() > Duration::from_secs(5) {
            bail!("node B still reads the removed secret");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
