//! The catalog: deploys through the admin API: every malformed upload refused with its
//! own message and nothing changed; deploys and rollbacks under steady load
//! without a failed request; versions, tenants and keys kept across a
//! restart without recompiling; a deployed component kept inside its tenant.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sluice_tests::{Reply, TestHost, admin, operator_key, root, sluice, sluice_binary, token};

/// A GET route answered by whichever component is deployed.
const WHO: &str = r#"
[[routes]]
method = "GET"
path = "/who/{a}"
auth = "public"
"#;

pub(crate) fn guest(name: &str) -> Result<Vec<u8>> {
    let path = root().join(format!("target/wasm32-wasip2/guest/{name}.wasm"));
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

fn wat(text: &str) -> Result<Vec<u8>> {
    Ok(wat::parse_str(text)?)
}

/// Uploads `component` with `manifest` (and schema files) as a new version
/// of `tenant`'s `name`.
pub(crate) async fn deploy(
    host: &TestHost,
    key: &str,
    (tenant, name): (&str, &str),
    manifest: &str,
    component: Vec<u8>,
    schemas: &[(&str, &str)],
) -> Result<Reply> {
    let mut form = Form::new()
        .part(
            "manifest",
            Part::text(manifest.to_owned()).file_name("sluice.toml"),
        )
        .part(
            "component",
            Part::bytes(component).file_name("component.wasm"),
        );
    for (path, text) in schemas {
        form = form.part(
            "schema",
            Part::text(text.to_string()).file_name(path.to_string()),
        );
    }
    let req = host
        .client
        .post(format!(
            "{}/v1/tenants/{tenant}/functions/{name}/versions",
            host.admin
        ))
        .bearer_auth(key)
        .multipart(form);
    host.send(req).await
}

pub(crate) async fn create_tenant(host: &TestHost, key: &str, name: &str) -> Result<()> {
    let reply = admin(
        host,
        Method::POST,
        "/v1/tenants",
        Some(key),
        Some(json!({ "name": name })),
    )
    .await?;
    assert_eq!(reply.status.as_u16(), 201, "body: {}", reply.body);
    Ok(())
}

async fn versions(
    host: &TestHost,
    key: &str,
    tenant: &str,
    name: &str,
) -> Result<Vec<(u64, bool)>> {
    let reply = admin(
        host,
        Method::GET,
        &format!("/v1/tenants/{tenant}/functions/{name}/versions"),
        Some(key),
        None,
    )
    .await?;
    assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.body);
    Ok(reply.body["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| (v["version"].as_u64().unwrap_or(0), v["active"] == true))
        .collect())
}

/// Which component answered: the echo guest reports the request's
/// parameters, the counter guest a count.
fn which(reply: &Reply) -> &'static str {
    if reply.body.get("params").is_some() {
        "echo"
    } else if reply.body.get("count").is_some() {
        "counter"
    } else {
        "neither"
    }
}

fn files(dir: &Path) -> Result<BTreeMap<String, std::time::SystemTime>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            for (name, time) in files(&entry.path())? {
                out.insert(
                    format!("{}/{name}", entry.file_name().to_string_lossy()),
                    time,
                );
            }
        } else {
            out.insert(
                entry.file_name().to_string_lossy().into_owned(),
                entry.metadata()?.modified()?,
            );
        }
    }
    Ok(out)
}

/// What is refused: (case, function, manifest, component, schemas, status, message).
type Case<'a> = (
    &'a str,
    &'a str,
    String,
    Vec<u8>,
    Vec<(&'a str, &'a str)>,
    u16,
    &'a str,
);

/// Every malformed deploy gets a 4xx naming its problem, and leaves the
/// live function, its versions and the stored components as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_deploys_are_refused_with_their_reason_and_change_nothing() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    create_tenant(&host, &key, "shop").await?;
    let good = deploy(&host, &key, ("shop", "who"), WHO, guest("echo")?, &[]).await?;
    assert_eq!(good.status.as_u16(), 201, "body: {}", good.body);
    assert_eq!(good.body["version"], 1);
    let components = files(&host.data().join("components"))?;

    let echo_route = "[[routes]]\nmethod = \"POST\"\npath = \"/items\"\nschema = \"item.json\"\n";
    let cases: Vec<Case> = vec![
        (
            "garbage",
            "who",
            WHO.into(),
            b"hello, world".to_vec(),
            vec![],
            422,
            "does not start with the WebAssembly magic number",
        ),
        (
            "a core module",
            "who",
            WHO.into(),
            wat("(module)")?,
            vec![],
            422,
            "is a core WebAssembly module",
        ),
        (
            "a truncated component",
            "who",
            WHO.into(),
            b"\0asm\x0d\0\x01\0\x07\x09garbage".to_vec(),
            vec![],
            422,
            "cannot compile",
        ),
        (
            "a socket import",
            "who",
            WHO.into(),
            wat(r#"(component (import "wasi:sockets/tcp@0.2.0" (instance)))"#)?,
            vec![],
            422,
            "imports wasi:sockets/tcp@0.2.0",
        ),
        (
            "a Rust guest that opens a TCP connection",
            "who",
            WHO.into(),
            std::fs::read(root().join("target/wasm32-wasip2/guest/socket.wasm"))?,
            vec![],
            422,
            "imports wasi:sockets/",
        ),
        (
            "an HTTP import",
            "who",
            WHO.into(),
            wat(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#)?,
            vec![],
            422,
            "imports wasi:http/outgoing-handler@0.2.0",
        ),
        (
            "an unknown import",
            "who",
            WHO.into(),
            wat(r#"(component (import "acme:evil/backdoor" (instance)))"#)?,
            vec![],
            422,
            "imports acme:evil/backdoor",
        ),
        (
            "no exports",
            "who",
            WHO.into(),
            wat("(component)")?,
            vec![],
            422,
            "exports neither sluice:function/handler nor sluice:function/message-handler",
        ),
        (
            "routes without a handler",
            "who",
            WHO.into(),
            guest("ticker")?,
            vec![],
            422,
            "[[routes]] need a component that exports sluice:function/handler",
        ),
        (
            "a schema that does not compile",
            "items",
            echo_route.into(),
            guest("echo")?,
            vec![("item.json", r#"{"type": 12}"#)],
            422,
            "the schema of POST /shop/items does not compile",
        ),
        (
            "a schema that is not JSON",
            "items",
            echo_route.into(),
            guest("echo")?,
            vec![("item.json", "{nope")],
            422,
            "schema item.json is not JSON",
        ),
        (
            "a schema not uploaded",
            "items",
            echo_route.into(),
            guest("echo")?,
            vec![],
            422,
            "schema \"item.json\" is named by a route but was not uploaded",
        ),
        (
            "invalid TOML",
            "who",
            "[[routes]\nmethod =".into(),
            guest("echo")?,
            vec![],
            422,
            "invalid manifest",
        ),
        (
            "another tenant in the manifest",
            "who",
            format!("tenant = \"acme\"\n{WHO}"),
            guest("echo")?,
            vec![],
            422,
            "the manifest's tenant is \"acme\", but this deploy is for tenant \"shop\"",
        ),
        (
            "a route of another function",
            "other",
            WHO.into(),
            guest("echo")?,
            vec![],
            409,
            "route GET /shop/who/{a} cannot be added: function shop/who serves it already",
        ),
        (
            "a function of a functions directory",
            "echo",
            WHO.into(),
            guest("echo")?,
            vec![],
            409,
            "is loaded from a functions directory",
        ),
    ];
    for (what, name, manifest, component, schemas, status, message) in cases {
        let tenant = if name == "echo" { "acme" } else { "shop" };
        let reply = deploy(&host, &key, (tenant, name), &manifest, component, &schemas).await?;
        assert_eq!(reply.status.as_u16(), status, "{what}: {}", reply.body);
        reply.assert_problem(status);
        let detail = reply.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(message),
            "{what}: {detail:?} should say {message:?}"
        );
    }
    let unknown = deploy(&host, &key, ("nobody", "who"), WHO, guest("echo")?, &[]).await?;
    unknown.assert_problem(404);
    let no_manifest = host
        .send(
            host.client
                .post(format!(
                    "{}/v1/tenants/shop/functions/who/versions",
                    host.admin
                ))
                .bearer_auth(&key)
                .multipart(Form::new().part("component", Part::bytes(guest("echo")?))),
        )
        .await?;
    no_manifest.assert_problem(422);
    assert!(
        no_manifest.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("manifest part is missing")
    );

    // Nothing changed: one version, live; the same route, served; the same files.
    assert_eq!(versions(&host, &key, "shop", "who").await?, [(1, true)]);
    let listed = admin(
        &host,
        Method::GET,
        "/v1/functions?tenant=shop",
        Some(&key),
        None,
    )
    .await?;
    let names: Vec<&str> = listed.body["functions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["who"]);
    let served = host.get("/shop/who/x", None).await?;
    assert_eq!(which(&served), "echo", "body: {}", served.body);
    assert_eq!(
        host.count("SELECT count(*) FROM function_versions", &[])
            .await?,
        1
    );
    assert_eq!(files(&host.data().join("components"))?, components);
    assert_eq!(host.get("/shop/items", None).await?.status.as_u16(), 404);
    Ok(())
}

/// Clients hammer a route while it is deployed, rolled back and deployed
/// again: no request fails, each response comes whole from one version, and
/// once a deploy or rollback has answered, new requests see its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_and_rollbacks_under_load_fail_no_request() -> Result<()> {
    let host = Arc::new(TestHost::start().await?);
    let key = operator_key(&host)?;
    create_tenant(&host, &key, "shop").await?;
    // The counter guest's GET route is /counters/{name}; echo's manifest
    // here serves the same path, so both versions answer the same URL.
    let counter_manifest =
        "[[routes]]\nmethod = \"GET\"\npath = \"/counters/{name}\"\nauth = \"public\"\n";
    let echo_manifest =
        "[[routes]]\nmethod = \"GET\"\npath = \"/counters/{a}\"\nauth = \"public\"\n";
    let v1 = deploy(
        &host,
        &key,
        ("shop", "flip"),
        echo_manifest,
        guest("echo")?,
        &[],
    )
    .await?;
    assert_eq!(v1.status.as_u16(), 201, "body: {}", v1.body);

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (host, stop) = (host.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut seen: BTreeMap<&'static str, u32> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let reply = host.get("/shop/counters/x", None).await?;
                anyhow::ensure!(
                    reply.status.as_u16() == 200,
                    "failed under deploy: {} {}",
                    reply.status,
                    reply.body
                );
                let from = which(&reply);
                anyhow::ensure!(
                    from != "neither",
                    "a response from no version: {}",
                    reply.body
                );
                *seen.entry(from).or_default() += 1;
            }
            Ok::<_, anyhow::Error>(seen)
        }));
    }
    let expect = |reply: &Reply, status: u16| {
        assert_eq!(reply.status.as_u16(), status, "body: {}", reply.body);
    };
    let mut answers = Vec::new();
    for round in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let deployed = deploy(
            &host,
            &key,
            ("shop", "flip"),
            counter_manifest,
            guest("counter")?,
            &[],
        )
        .await?;
        expect(&deployed, 201);
        answers.push(which(&host.get("/shop/counters/x", None).await?));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let back = admin(
            &host,
            Method::POST,
            "/v1/tenants/shop/functions/flip/rollback",
            Some(&key),
            Some(json!({ "version": 1 })),
        )
        .await?;
        expect(&back, 200);
        assert_eq!(back.body["version"], 1, "round {round}");
        answers.push(which(&host.get("/shop/counters/x", None).await?));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total: BTreeMap<&str, u32> = BTreeMap::new();
    for client in clients {
        for (from, n) in client.await?? {
            *total.entry(from).or_default() += n;
        }
    }
    assert_eq!(
        answers,
        ["counter", "echo", "counter", "echo", "counter", "echo"]
    );
    assert!(
        total["echo"] > 0 && total["counter"] > 0,
        "both versions served: {total:?}"
    );
    let stored = versions(&host, &key, "shop", "flip").await?;
    assert_eq!(stored, [(4, false), (3, false), (2, false), (1, true)]);
    Ok(())
}

/// After a restart every tenant, key, version and quota is back, the live
/// version is the one rolled back to, and the compiled artifacts are reused
/// as they are, not rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_tenants_keys_and_versions_without_recompiling() -> Result<()> {
    let data = tempfile::TempDir::new()?;
    let cache = data.path().join("artifacts");
    let adjust = |c: &mut sluice_host::Config| {
        c.runtime.cache_dir = Some(data.path().join("artifacts"));
    };
    let host = TestHost::start_with(tempfile::TempDir::new()?, adjust).await?;
    let key = operator_key(&host)?;
    create_tenant(&host, &key, "shop").await?;
    let manifest = "[[routes]]\nmethod = \"GET\"\npath = \"/counters/{name}\"\nauth = \"public\"\n";
    let reply = deploy(&host, &key, ("shop", "flip"), manifest, guest("echo")?, &[]).await?;
    assert_eq!(reply.status.as_u16(), 201, "body: {}", reply.body);
    // v2 with the CLI: a .wasm file and the manifest, tenant and name given as flags.
    let dir = tempfile::TempDir::new()?;
    std::fs::write(dir.path().join("sluice.toml"), manifest)?;
    let wasm = root().join("target/wasm32-wasip2/guest/counter.wasm");
    let out = sluice(
        &host,
        Some(&key),
        &[
            "deploy",
            &wasm.to_string_lossy(),
            "--manifest",
            &dir.path().join("sluice.toml").to_string_lossy(),
            "--tenant",
            "shop",
            "--name",
            "flip",
        ],
    )?;
    let said = String::from_utf8(out.stdout)?;
    assert!(said.contains("deployed shop/flip v2"), "{said}");
    let out = sluice(&host, Some(&key), &["versions", "shop", "flip"])?;
    let table = String::from_utf8(out.stdout)?;
    assert!(
        table.contains("live") && table.contains("(tests)"),
        "{table}"
    );
    sluice(
        &host,
        Some(&key),
        &["rollback", "shop", "flip", "--to", "1"],
    )?;
    sluice(
        &host,
        Some(&key),
        &["tenant", "quota", "shop", "--max-functions", "3"],
    )?;
    let artifacts = files(&cache)?;
    assert!(
        !artifacts.is_empty(),
        "compiled artifacts are cached in {}",
        cache.display()
    );
    let tenants_before = admin(&host, Method::GET, "/v1/tenants", Some(&key), None)
        .await?
        .body;

    let data_dir = host.stop().await?;
    let host = TestHost::start_with(data_dir, adjust).await?;
    assert_eq!(files(&cache)?, artifacts, "nothing was recompiled");
    let tenants_after = admin(&host, Method::GET, "/v1/tenants", Some(&key), None).await?;
    assert_eq!(
        tenants_after.status.as_u16(),
        200,
        "the key still works: {}",
        tenants_after.body
    );
    assert_eq!(tenants_after.body, tenants_before);
    let shop = tenants_after.body["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == "shop")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(shop["max_functions"], 3);
    assert_eq!(
        versions(&host, &key, "shop", "flip").await?,
        [(2, false), (1, true)]
    );
    let served = host.get("/shop/counters/x", None).await?;
    assert_eq!(which(&served), "echo", "v1 is live: {}", served.body);
    let out = sluice(
        &host,
        Some(&key),
        &["--json", "functions", "list", "--tenant", "shop"],
    )?;
    let listed: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(listed["version"], 1);
    assert_eq!(listed["origin"], "deployed");
    Ok(())
}

/// A tenant's quota caps how many functions it may deploy; redeploying one
/// it has is always allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_quota_is_enforced() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    create_tenant(&host, &key, "shop").await?;
    let quota = admin(
        &host,
        Method::PUT,
        "/v1/tenants/shop/quota",
        Some(&key),
        Some(json!({ "max_functions": 1 })),
    )
    .await?;
    assert_eq!(quota.status.as_u16(), 200, "body: {}", quota.body);
    let first = deploy(&host, &key, ("shop", "a"), WHO, guest("echo")?, &[]).await?;
    assert_eq!(first.status.as_u16(), 201, "body: {}", first.body);
    let again = deploy(&host, &key, ("shop", "a"), WHO, guest("echo")?, &[]).await?;
    assert_eq!(again.status.as_u16(), 201, "body: {}", again.body);
    let other = "[[routes]]\nmethod = \"GET\"\npath = \"/b\"\nauth = \"public\"\n";
    let second = deploy(&host, &key, ("shop", "b"), other, guest("echo")?, &[]).await?;
    second.assert_problem(403);
    assert!(
        second.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("quota")
    );

    // Deleting the tenant needs force while it has functions; force takes
    // them down with it.
    let refused = admin(&host, Method::DELETE, "/v1/tenants/shop", Some(&key), None).await?;
    refused.assert_problem(409);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("force=true")
    );
    assert_eq!(host.get("/shop/who/x", None).await?.status.as_u16(), 200);
    let forced = admin(
        &host,
        Method::DELETE,
        "/v1/tenants/shop?force=true",
        Some(&key),
        None,
    )
    .await?;
    assert_eq!(forced.status.as_u16(), 200, "body: {}", forced.body);
    host.get("/shop/who/x", None).await?.assert_problem(404);
    assert_eq!(
        host.count(
            "SELECT count(*) FROM function_versions WHERE tenant = 'shop'",
            &[]
        )
        .await?,
        0
    );
    Ok(())
}

/// A component deployed for tenant `mallory` reads and writes only
/// mallory's documents and sends only to mallory's topics, whatever
/// collection names and keys it passes; acme's token is refused on
/// mallory's routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_component_stays_inside_its_tenant() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    create_tenant(&host, &key, "mallory").await?;
    let manifest = "[[routes]]\nmethod = \"POST\"\npath = \"/probe/documents\"\n\n\
                    [[routes]]\nmethod = \"POST\"\npath = \"/probe/send\"\n";
    let reply = deploy(
        &host,
        &key,
        ("mallory", "probe"),
        manifest,
        guest("probe")?,
        &[],
    )
    .await?;
    assert_eq!(reply.status.as_u16(), 201, "body: {}", reply.body);

    let acme = token("alice", "acme", &[]);
    let mallory = token("eve", "mallory", &[]);
    let planted = host
        .post(
            "/acme/probe/documents",
            Some(&acme),
            &json!({"put": ["secret"], "prefix": "", "limit": 10}),
        )
        .await?;
    assert_eq!(planted.status.as_u16(), 200, "body: {}", planted.body);

    // acme's token is refused on mallory's routes.
    let refused = host
        .post(
            "/mallory/probe/documents",
            Some(&acme),
            &json!({"prefix": "", "limit": 10}),
        )
        .await?;
    refused.assert_problem(403);

    let collections = [
        "probe",
        "../acme/probe",
        "acme/probe",
        "acme:probe",
        "acme.probe",
        "/acme/probe",
        "acme",
    ];
    let keys = [
        "secret",
        "../secret",
        "acme/probe/secret",
        "acme:probe:secret",
        "acme/secret",
    ];
    // Reads first: mallory has written nothing, so whatever it names, it
    // must find nothing (or be refused).
    for collection in collections {
        for name in keys {
            let probe =
                json!({ "collection": collection, "get": [name], "prefix": "", "limit": 100 });
            let reply = host
                .post("/mallory/probe/documents", Some(&mallory), &probe)
                .await?;
            if reply.status.as_u16() == 200 {
                assert_eq!(reply.body["got"], json!([null]), "{collection}/{name}");
                assert_eq!(reply.body["pages"], json!([[]]), "{collection}/{name}");
            } else {
                reply.assert_problem(reply.status.as_u16());
            }
        }
    }
    // Then writes: each lands in mallory's namespace or is refused.
    let mut written = 0;
    for collection in collections {
        for name in keys {
            let probe =
                json!({ "collection": collection, "put": [name], "prefix": "", "limit": 100 });
            let reply = host
                .post("/mallory/probe/documents", Some(&mallory), &probe)
                .await?;
            if reply.status.as_u16() == 200 {
                written += 1;
            }
        }
    }
    assert!(
        written > 0,
        "some writes succeed, in mallory's own namespace"
    );
    let mallory_docs = host
        .count(
            "SELECT count(*) FROM documents WHERE tenant = 'mallory'",
            &[],
        )
        .await?;
    assert_eq!(mallory_docs, written);
    // acme's document is untouched, and every write mallory made is mallory's.
    let acme_docs = host
        .count(
            "SELECT count(*) FROM documents WHERE tenant = 'acme' AND collection = 'probe'",
            &[],
        )
        .await?;
    assert_eq!(acme_docs, 1);
    let version = host
        .count("SELECT version FROM documents WHERE tenant = 'acme' AND collection = 'probe' AND key = 'secret'", &[])
        .await?;
    assert_eq!(version, 1);
    let foreign = host
        .count(
            "SELECT count(*) FROM documents WHERE tenant NOT IN ('acme', 'mallory')",
            &[],
        )
        .await?;
    assert_eq!(foreign, 0);

    // Sending to acme's topic reaches none of acme's consumers.
    let before = host
        .count(
            "SELECT count(*) FROM invocations WHERE tenant = 'acme' AND function = 'consumer'",
            &[],
        )
        .await?;
    let sent = host
        .post(
            "/mallory/probe/send",
            Some(&mallory),
            &json!({"topic": "jobs"}),
        )
        .await?;
    assert_eq!(sent.status.as_u16(), 204, "body: {}", sent.body);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let deliveries = host
        .count("SELECT count(*) FROM deliveries WHERE tenant = 'acme'", &[])
        .await?;
    assert_eq!(deliveries, 0);
    let after = host
        .count(
            "SELECT count(*) FROM invocations WHERE tenant = 'acme' AND function = 'consumer'",
            &[],
        )
        .await?;
    assert_eq!(after, before);
    let outbox = host
        .count(
            "SELECT count(*) FROM outbox WHERE tenant = 'mallory' AND topic = 'jobs'",
            &[],
        )
        .await?;
    assert_eq!(outbox, 1);
    Ok(())
}

/// A deployed function's schedules and subscriptions start with its
/// deploy and stop with its removal, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_schedule_fires_until_the_function_is_removed() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    create_tenant(&host, &key, "shop").await?;
    let manifest = std::fs::read_to_string(root().join("tests/scheduled/ticker/sluice.toml"))?
        .replace("tenant = \"acme\"\n", "")
        .replace("name = \"ticker\"\n", "");
    let reply = deploy(
        &host,
        &key,
        ("shop", "ticker"),
        &manifest,
        guest("ticker")?,
        &[],
    )
    .await?;
    assert_eq!(reply.status.as_u16(), 201, "body: {}", reply.body);
    let ticks = "SELECT count(*) FROM documents WHERE tenant = 'shop' AND collection = 'ticks'";
    sluice_tests::eventually("a tick of the deployed schedule", || async {
        Ok((host.count(ticks, &[]).await? >= 2).then_some(()))
    })
    .await?;

    let removed = admin(
        &host,
        Method::DELETE,
        "/v1/tenants/shop/functions/ticker",
        Some(&key),
        None,
    )
    .await?;
    assert_eq!(removed.status.as_u16(), 200, "body: {}", removed.body);
    // A tick already enqueued may still be delivered; then they stop.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let settled = host.count(ticks, &[]).await?;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        host.count(ticks, &[]).await?,
        settled,
        "no ticks after the removal"
    );
    assert_eq!(
        host.count("SELECT count(*) FROM function_versions", &[])
            .await?,
        0
    );
    Ok(())
}

/// Uploads are compiled by `sluice compile-component` in a child process:
/// one past its deadline or its memory is killed and the deploy refused,
/// and a host with room compiles through the same box and serves.
#[tokio::test]
async fn compilation_is_boxed_in_time_and_memory() -> Result<()> {
    let component = std::fs::read(root().join("target/wasm32-wasip2/guest/echo.wasm"))?;
    let manifest = "[[routes]]\nmethod = \"GET\"\npath = \"/echo/{a}\"\nauth = \"public\"\n";
    let exe = sluice_binary()?;
    let boxes: [(u64, u64, &str); 3] = [
        (1, 2 << 30, "compilation took longer than 1 ms"),
        (
            60_000,
            48 << 20,
            "compilation needed more than 50331648 bytes of memory",
        ),
        (60_000, 2 << 30, ""),
    ];
    for (timeout_ms, memory_bytes, refusal) in boxes {
        let data = tempfile::TempDir::new()?;
        // A cache of its own: a shared one could hold this component already.
        let cache = data.path().join("cache");
        let exe = exe.clone();
        let host = TestHost::start_with(data, move |c| {
            c.functions_dirs.clear();
            c.runtime.cache_dir = Some(cache);
            c.runtime.isolated_compiler = Some(exe);
            c.runtime.compile_timeout_ms = timeout_ms;
            c.runtime.compile_memory_bytes = memory_bytes;
        })
        .await?;
        let key = operator_key(&host)?;
        create_tenant(&host, &key, "boxed").await?;
        let reply = deploy(
            &host,
            &key,
            ("boxed", "echo"),
            manifest,
            component.clone(),
            &[],
        )
        .await?;
        if refusal.is_empty() {
            assert_eq!(reply.status.as_u16(), 201, "body: {}", reply.body);
            assert_eq!(host.get("/boxed/echo/x", None).await?.status, 200);
        } else {
            reply.assert_problem(422);
            let detail = reply.body["detail"].as_str().unwrap_or_default();
            assert!(detail.contains(refusal), "{detail}");
            assert_eq!(host.get("/boxed/echo/x", None).await?.status, 404);
        }
        host.stop().await?;
    }
    Ok(())
}

/// `component` with a custom section appended: the same code, other bytes
/// (and so another SHA-256).
fn variant(mut component: Vec<u8>, tag: &str) -> Vec<u8> {
    // Section id 0 (custom), its size, the name's length and the name.
    let name = format!("sluice-test-{tag}");
    let size = u8::try_from(1 + name.len()).unwrap_or(u8::MAX);
    component.extend([0, size, u8::try_from(name.len()).unwrap_or(u8::MAX)]);
    component.extend(name.bytes());
    component
}

/// `sluice_components_loaded` from the admin metrics.
async fn components_loaded(host: &TestHost, key: &str) -> Result<i64> {
    let reply = admin(host, Method::GET, "/metrics", Some(key), None).await?;
    let text = String::from_utf8(reply.raw)?;
    text.lines()
        .find_map(|l| l.strip_prefix("sluice_components_loaded "))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no sluice_components_loaded in:\n{text}"))
}

/// Functions that deploy the same bytes, in one tenant or several, share
/// one compiled component in memory; it goes when the last of them does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_of_the_same_bytes_share_their_compiled_code() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    for tenant in ["share1", "share2"] {
        create_tenant(&host, &key, tenant).await?;
    }
    let before = components_loaded(&host, &key).await?;
    let (same, other) = (variant(guest("echo")?, "a"), variant(guest("echo")?, "b"));
    let route = |name: &str| {
        format!("[[routes]]\nmethod = \"GET\"\npath = \"/{name}/{{a}}\"\nauth = \"public\"\n")
    };
    for (tenant, name) in [("share1", "f"), ("share1", "g"), ("share2", "f")] {
        let reply = deploy(&host, &key, (tenant, name), &route(name), same.clone(), &[]).await?;
        assert_eq!(reply.status.as_u16(), 201, "body: {}", reply.body);
    }
    assert_eq!(components_loaded(&host, &key).await?, before + 1);
    let reply = deploy(&host, &key, ("share2", "g"), &route("g"), other, &[]).await?;
    assert_eq!(reply.status.as_u16(), 201, "body: {}", reply.body);
    assert_eq!(components_loaded(&host, &key).await?, before + 2);
    // Every one of them serves its own routes.
    for path in ["/share1/f/x", "/share1/g/x", "/share2/f/x", "/share2/g/x"] {
        let reply = host.get(path, None).await?;
        assert_eq!(reply.status.as_u16(), 200, "{path}: {}", reply.body);
    }
    let removed = admin(
        &host,
        Method::DELETE,
        "/v1/tenants/share2/functions/g",
        Some(&key),
        None,
    )
    .await?;
    assert!(removed.status.is_success(), "body: {}", removed.body);
    assert_eq!(components_loaded(&host, &key).await?, before + 1);
    host.stop().await?;
    Ok(())
}

/// A restarted host loads a deployed function's code on its first call,
/// not at start; code idle past `[runtime] unload_idle_s` is unloaded, and
/// the next call loads it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployed_code_is_loaded_on_first_use_and_unloaded_when_idle() -> Result<()> {
    // Deployed under the default (10 minutes): nothing is unloaded meanwhile,
    // however slowly the deploys go.
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    create_tenant(&host, &key, "lazy").await?;
    // The functions directories' code stays loaded: their files may change.
    let base = components_loaded(&host, &key).await?;
    let route = |name: &str| {
        format!("[[routes]]\nmethod = \"GET\"\npath = \"/{name}/{{a}}\"\nauth = \"public\"\n")
    };
    for name in ["f", "g"] {
        let component = variant(guest("echo")?, name);
        let reply = deploy(&host, &key, ("lazy", name), &route(name), component, &[]).await?;
        assert_eq!(reply.status.as_u16(), 201, "body: {}", reply.body);
    }
    assert_eq!(components_loaded(&host, &key).await?, base + 2);

    // Restarted with code unloaded after 2 s idle: a call and the count
    // that follows it are well within that.
    let adjust = |c: &mut sluice_host::Config| c.runtime.unload_idle_s = 2;
    let host = TestHost::start_with(host.stop().await?, adjust).await?;
    assert_eq!(
        components_loaded(&host, &key).await?,
        base,
        "nothing deployed is loaded at start"
    );
    let call = |path: &'static str| {
        let host = &host;
        async move {
            let reply = host.get(path, None).await?;
            assert_eq!(reply.status.as_u16(), 200, "{path}: {}", reply.body);
            assert_eq!(which(&reply), "echo");
            anyhow::Ok(())
        }
    };
    call("/lazy/f/x").await?;
    assert_eq!(components_loaded(&host, &key).await?, base + 1);
    let (every, guard) = (Duration::from_millis(100), Duration::from_secs(10));
    sluice_tests::poll_until("idle code unloaded within 10 s", every, guard, || async {
        Ok((components_loaded(&host, &key).await? == base).then_some(()))
    })
    .await?;
    call("/lazy/g/x").await?;
    call("/lazy/f/x").await?;
    assert_eq!(components_loaded(&host, &key).await?, base + 2);
    host.stop().await?;
    Ok(())
}
