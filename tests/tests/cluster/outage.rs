//! PostgreSQL outages, on a server of the test's own that it stops and
//! starts: reads fail fast with 503 instead of holding their slots, the
//! host serves again as soon as the database is back, SIGTERM stays within
//! its bound while the database is down, and the database's password never
//! reaches a log line, `/metrics`, the admin API or `--help`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::json;
use sluice_tests::postgres::{OutageServer, database_url};
use sluice_tests::{Reply, eventually, root, sluice_binary, token};
use sqlx::Connection;

use crate::node::{Node, guests, one_at_a_time};

/// The password the tests put in the database URL (the test server trusts
/// loopback, so any password connects).
const PASSWORD: &str = "pw-Zq81-never-logged";

fn examples() -> std::path::PathBuf {
    root().join("guest-examples")
}

/// A node on `server`'s `postgres` database, its URL carrying [`PASSWORD`].
fn node(server: &OutageServer, name: &'static str) -> Result<Node> {
    let url = database_url(
        server
            .url
            .replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
            .as_str(),
        "postgres",
    )?;
    Node::start(name, &url, &[examples(), guests()], "", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fail_fast_while_the_database_is_down_and_recover() -> Result<()> {
    let _one = one_at_a_time().await;
    let server = OutageServer::start()?;
    let host = node(&server, "A")?;
    let ann = token("ann", "demo", &[]);
    let made = host
        .post("/demo/todos", &ann, &json!({ "title": "kept" }))
        .await?;
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.body["id"].as_str().context("no id")?.to_owned();

    server.down()?;
    // Reads, lists, counts and writes at once: each answered 503 with
    // retry-after, long before the 10 s function timeout.
    let started = Instant::now();
    let paths = [
        format!("/demo/todos/{id}"),
        "/demo/todos".to_owned(),
        "/demo/todos/count".to_owned(),
    ];
    let reads = (0..12).map(|i| host.get(&paths[i % 3], Some(&ann)));
    let lost = json!({ "title": "lost?" });
    let writes = (0..4).map(|_| host.post("/demo/todos", &ann, &lost));
    let (reads, writes) = futures_util::future::join(
        futures_util::future::try_join_all(reads),
        futures_util::future::try_join_all(writes),
    )
    .await;
    let took = started.elapsed();
    for reply in reads?.iter().chain(writes?.iter()) {
        refused_as_unavailable(reply);
    }
    assert!(
        took < Duration::from_secs(5),
        "16 requests took {took:?} to be refused; the function timeout is 10 s"
    );
    eprintln!("16 requests refused in {took:?} with the database down");

    server.up()?;
    eventually("reads to succeed again", || async {
        let read = host.get(&format!("/demo/todos/{id}"), Some(&ann)).await?;
        Ok((read.status == 200).then_some(()))
    })
    .await?;
    let count = host.get("/demo/todos/count", Some(&ann)).await?;
    assert_eq!(
        count.body["count"], 1,
        "no refused write committed: {}",
        count.body
    );
    let write = host
        .post("/demo/todos", &ann, &json!({ "title": "after" }))
        .await?;
    assert_eq!(write.status, 201, "{}", write.body);
    host.kill()
}

fn refused_as_unavailable(reply: &Reply) {
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        reply.body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("store-unavailable")),
        "{}",
        reply.body
    );
    assert!(!reply.header("retry-after").is_empty(), "no retry-after");
    assert!(!reply.request_id().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_database_is_down_stops_within_its_bound() -> Result<()> {
    let _one = one_at_a_time().await;
    let server = OutageServer::start()?;
    let mut host = node(&server, "A")?;
    let ann = token("ann", "demo", &[]);
    let made = host
        .post("/demo/todos", &ann, &json!({ "title": "before" }))
        .await?;
    assert_eq!(made.status, 201, "{}", made.body);
    server.down()?;
    // Work under way when the signal comes.
    let busy = (0..8).map(|_| {
        let req = host
            .request(Method::POST, "/demo/todos")
            .bearer_auth(&ann)
            .json(&json!({ "title": "during" }));
        sluice_tests::send(req)
    });
    let busy = tokio::spawn(futures_util::future::join_all(busy));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    rustix_kill(host.pid())?;
    let status = host.exited().await?;
    let took = signalled.elapsed();
    eprintln!("stopped {took:?} after SIGTERM with the database down");
    let _ = busy.await;
    assert!(
        took < Duration::from_secs(15),
        "SIGTERM took {took:?}; running work gets 10 s\n{}",
        host.log_tail()
    );
    assert!(status.success(), "{status:?}\n{}", host.log_tail());
    eprintln!("{}", host.log_tail());
    let log = host.log();
    assert!(
        log.iter().any(|l| l.contains("stopped")),
        "{}",
        host.log_tail()
    );
    Ok(())
}

/// SIGTERM, as `kill` sends it.
fn rustix_kill(pid: u32) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -TERM {pid} failed");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_never_shows() -> Result<()> {
    let _one = one_at_a_time().await;
    let server = OutageServer::start()?;
    let host = node(&server, "A")?;
    let ann = token("ann", "demo", &[]);
    host.post("/demo/todos", &ann, &json!({ "title": "x" }))
        .await?;
    // The start-up line names the database, without its password.
    let log = host.log();
    assert!(
        log.iter()
            .any(|l| l.contains("sluice is serving") && l.contains("postgres:***@")),
        "{}",
        host.log_tail()
    );
    // An outage's errors, too.
    server.down()?;
    let refused = host.get("/demo/todos", Some(&ann)).await?;
    assert_eq!(refused.status, 503);
    server.up()?;

    let key = operator_key(&host)?;
    let metrics = host.metrics(&key).await?;
    assert!(!metrics.contains(PASSWORD));
    for path in [
        "/v1/tenants",
        "/v1/tenants/demo",
        "/v1/stats",
        "/v1/invocations",
    ] {
        let reply = sluice_tests::send(host.admin(Method::GET, path, &key)).await?;
        assert!(!reply.body.to_string().contains(PASSWORD), "{path}");
    }
    // `--help` shows where the URL comes from, not what it is.
    let url = format!("postgres://sluice:{PASSWORD}@127.0.0.1:1/x");
    let help = std::process::Command::new(sluice_binary()?)
        .args(["serve", "--help"])
        .env("SLUICE_DATABASE_URL", &url)
        .output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("SLUICE_DATABASE_URL") && !help.contains(PASSWORD),
        "{help}"
    );
    // A URL the host refuses is shown without its password.
    let refused = std::process::Command::new(sluice_binary()?)
        .args([
            "--database-url",
            &format!("mysql://u:{PASSWORD}@h/db"),
            "key",
            "list",
        ])
        .output()?;
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && !said.contains(PASSWORD),
        "{said}"
    );

    let leaked: Vec<_> = host
        .log()
        .into_iter()
        .filter(|l| l.contains(PASSWORD))
        .collect();
    assert!(leaked.is_empty(), "the password was logged: {leaked:#?}");

    // Operators find the host's connections by name.
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&database_url(&server.url, "postgres")?).await?;
    let named: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'sluice/%'",
    )
    .fetch_one(&mut conn)
    .await?;
    assert!(named > 0, "no connection named sluice/<node>");
    host.kill()
}

/// A new operator key on `host`'s database.
fn operator_key(host: &Node) -> Result<String> {
    let url = host
        .log()
        .iter()
        .find_map(|l| {
            l.split("database=")
                .nth(1)
                .map(|r| r.split_whitespace().next().unwrap_or("").to_owned())
        })
        .context("no database in the log")?
        .replace("***", PASSWORD);
    let out = std::process::Command::new(sluice_binary()?)
        .args(["--database-url", &url, "key", "create", "--name", "outage"])
        .output()?;
    if !out.status.success() {
        bail!(
            "sluice key create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Messages whose commit failed because the database went away run again
/// as soon as it is back: their leases are given back, not waited out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_go_back_when_the_database_returns() -> Result<()> {
    let _one = one_at_a_time().await;
    let server = OutageServer::start()?;
    let url = database_url(&server.url, "postgres")?;
    // A lease far longer than the wait below: only giving it back can pass.
    let extra = "[queue]\nlease_ms = 120000\n";
    let host = Node::start("A", &url, &[guests()], extra, &[])?;
    let ed = token("ed", "acme", &[]);
    let jobs: Vec<_> = (0..300)
        .map(|i| json!({ "op": "slow", "key": format!("job-{i}"), "ms": 20 }))
        .collect();
    let sent = host
        .post(
            "/acme/consumer/send-many",
            &ed,
            &json!({ "topic": "jobs", "payloads": jobs }),
        )
        .await?;
    assert!(sent.status.is_success(), "{}", sent.body);
    // Down while the consumers are at work: their commits fail.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.down()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.up()?;
    let back = Instant::now();
    loop {
        let effects = host.get("/acme/consumer/effects", Some(&ed)).await?;
        let done = effects.body.as_array().map_or(0, Vec::len);
        if done == 300 {
            break;
        }
        if back.elapsed() > Duration::from_secs(40) {
            bail!(
                "{done} of 300 jobs done 40 s after the database returned; leases last 120 s\n{}",
                host.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "all 300 jobs done {:?} after the database returned",
        back.elapsed()
    );
    let log = host.log();
    assert!(
        log.iter().any(|l| l.contains("lease given back")),
        "no lease was given back: the outage missed the consumers\n{}",
        host.log_tail()
    );
    host.kill()
}
