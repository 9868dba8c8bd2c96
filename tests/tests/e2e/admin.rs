//! The admin API on its own listener: operator keys made and revoked with
//! the CLI, tenants created, shown, listed and deleted over HTTP and with
//! the CLI, and the OpenAPI document.

use anyhow::{Result, bail};
use serde_json::{Value, json};
use sluice_tests::{TestHost, admin, operator_key, sluice};

/// Without a key, or with a revoked one, the admin API answers 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_keys_are_required_and_revocable() -> Result<()> {
    let host = TestHost::start().await?;
    let none = admin(&host, reqwest::Method::GET, "/v1/tenants", None, None).await?;
    none.assert_problem(401);
    assert_eq!(none.header("www-authenticate"), "Bearer");
    let wrong = admin(
        &host,
        reqwest::Method::GET,
        "/v1/tenants",
        Some("sk_nope_0"),
        None,
    )
    .await?;
    wrong.assert_problem(401);

    let key = operator_key(&host)?;
    assert!(key.starts_with("sk_"), "key: {key}");
    let ok = admin(&host, reqwest::Method::GET, "/v1/tenants", Some(&key), None).await?;
    assert_eq!(ok.status.as_u16(), 200, "body: {}", ok.body);

    // The key is stored hashed: its text is nowhere in the database.
    let db = host.db().await?;
    let stored: Vec<(String,)> = sqlx::query_as("SELECT hash FROM operator_keys")
        .fetch_all(&db)
        .await?;
    db.close().await;
    assert!(
        stored
            .iter()
            .all(|(hash,)| !key.contains(hash.as_str()) && hash.len() == 64)
    );

    let id = key.split('_').nth(1).unwrap_or_default();
    let listed = String::from_utf8(sluice(&host, None, &["key", "list"])?.stdout)?;
    assert!(listed.contains(id) && listed.contains("active"), "{listed}");
    sluice(&host, None, &["key", "revoke", id])?;
    let revoked = admin(&host, reqwest::Method::GET, "/v1/tenants", Some(&key), None).await?;
    revoked.assert_problem(401);
    host.stop().await?;
    Ok(())
}

/// Tenants: the ones of loaded manifests exist; new ones are created,
/// shown, listed and deleted; a tenant with functions is not deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_managed_over_http_and_with_the_cli() -> Result<()> {
    use reqwest::Method;
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    let k = Some(key.as_str());

    let listed = admin(&host, Method::GET, "/v1/tenants", k, None).await?;
    let names: Vec<&str> = listed.body["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tenant in ["acme", "demo", "other"] {
        assert!(names.contains(&tenant), "tenants: {names:?}");
    }

    let created = admin(
        &host,
        Method::POST,
        "/v1/tenants",
        k,
        Some(json!({"name": "newco"})),
    )
    .await?;
    assert_eq!(created.status.as_u16(), 201, "body: {}", created.body);
    assert_eq!(created.body["name"], "newco");
    admin(
        &host,
        Method::POST,
        "/v1/tenants",
        k,
        Some(json!({"name": "newco"})),
    )
    .await?
    .assert_problem(409);
    let bad = admin(
        &host,
        Method::POST,
        "/v1/tenants",
        k,
        Some(json!({"name": "Bad Name"})),
    )
    .await?;
    bad.assert_problem(422);
    assert!(
        bad.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("a-z")
    );

    let demo = admin(&host, Method::GET, "/v1/tenants/demo", k, None).await?;
    assert_eq!(demo.body["created_by"], "manifest");
    let functions = demo.body["functions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(functions.contains(&json!("todo")), "body: {}", demo.body);
    let refused = admin(&host, Method::DELETE, "/v1/tenants/demo", k, None).await?;
    refused.assert_problem(409);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("functions directories")
    );

    let out = sluice(&host, k, &["tenant", "create", "cli-co"])?;
    assert!(String::from_utf8(out.stdout)?.contains("tenant cli-co created"));
    let out = sluice(&host, k, &["tenant", "list"])?;
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains("cli-co") && text.contains("newco"), "{text}");
    let out = sluice(&host, k, &["--json", "tenant", "show", "cli-co"])?;
    let shown: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(shown["functions"], json!([]));

    let deleted = admin(&host, Method::DELETE, "/v1/tenants/newco", k, None).await?;
    assert_eq!(deleted.status.as_u16(), 200, "body: {}", deleted.body);
    admin(&host, Method::GET, "/v1/tenants/newco", k, None)
        .await?
        .assert_problem(404);
    sluice(&host, k, &["tenant", "delete", "cli-co"])?;
    admin(&host, Method::GET, "/v1/tenants/cli-co", k, None)
        .await?
        .assert_problem(404);

    let data = host.stop().await?;
    let host = TestHost::start_with(data, |_| {}).await?;
    let key_after = admin(&host, Method::GET, "/v1/tenants", k, None).await?;
    assert_eq!(key_after.status.as_u16(), 200, "keys survive a restart");
    host.stop().await?;
    Ok(())
}

/// The OpenAPI document is served, is the checked-in file, and describes
/// every route the admin API answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_and_complete() -> Result<()> {
    let host = TestHost::start().await?;
    let served = admin(&host, reqwest::Method::GET, "/v1/openapi.json", None, None).await?;
    assert_eq!(served.status.as_u16(), 200);
    let file: Value = serde_json::from_str(sluice_host::admin::OPENAPI)?;
    assert_eq!(served.body, file);
    assert!(
        served.body["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.")
    );
    for (path, method) in [
        ("/v1/openapi.json", "get"),
        ("/v1/invocations", "get"),
        ("/v1/tenants", "get"),
        ("/v1/tenants", "post"),
        ("/v1/tenants/{name}", "get"),
        ("/v1/tenants/{name}", "delete"),
        ("/v1/tenants/{name}/auth", "put"),
        ("/v1/tenants/{name}/auth", "delete"),
        ("/v1/tenants/{name}/rate", "put"),
        ("/v1/tenants/{name}/rate", "delete"),
        ("/v1/tenants/{name}/quota", "put"),
        ("/v1/tenants/{name}/openapi.json", "get"),
        ("/v1/tenants/{name}/config", "get"),
        ("/v1/tenants/{name}/config/{key}", "put"),
        ("/v1/tenants/{name}/config/{key}", "delete"),
        ("/v1/secrets/reseal", "post"),
        ("/v1/functions", "get"),
        ("/v1/tenants/{tenant}/functions/{name}", "delete"),
        ("/v1/tenants/{tenant}/functions/{name}/versions", "get"),
        ("/v1/tenants/{tenant}/functions/{name}/versions", "post"),
        ("/v1/tenants/{tenant}/functions/{name}/rollback", "post"),
        ("/v1/invocations/{request_id}", "get"),
        ("/v1/stats", "get"),
        ("/v1/dead-letters", "get"),
        ("/v1/dead-letters/{id}", "get"),
        ("/v1/dead-letters/{id}/replay", "post"),
        ("/v1/dead-letters/replay", "post"),
        ("/metrics", "get"),
    ] {
        assert!(
            served.body["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    host.stop().await?;
    Ok(())
}

/// `/metrics` counts requests by tenant, function and status, times each
/// stage, and reports the instance pool; it needs an operator key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_time_stages() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    let alice = sluice_tests::token("alice", "demo", &[]);
    for _ in 0..3 {
        let created = host
            .post("/demo/todos", Some(&alice), &json!({"title": "count me"}))
            .await?;
        assert_eq!(created.status.as_u16(), 201);
    }
    host.get("/demo/todos", None).await?.assert_problem(401);
    host.get("/nowhere", None).await?.assert_problem(404);

    admin(&host, reqwest::Method::GET, "/metrics", None, None)
        .await?
        .assert_problem(401);
    let reply = admin(&host, reqwest::Method::GET, "/metrics", Some(&key), None).await?;
    assert_eq!(reply.status.as_u16(), 200);
    assert!(reply.header("content-type").starts_with("text/plain"));
    let text = String::from_utf8(reply.raw)?;
    for line in [
        r#"sluice_requests_total{tenant="demo",function="todo",status="201"} 3"#,
        r#"sluice_requests_total{tenant="demo",function="todo",status="401"} 1"#,
        r#"sluice_requests_total{tenant="",function="",status="404"} 1"#,
        r#"sluice_stage_duration_seconds_count{stage="process"} 3"#,
        r#"sluice_stage_duration_seconds_count{stage="persist"} 3"#,
        "sluice_instances_max 128",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing from:\n{text}"
        );
    }
    assert!(text.contains("sluice_instances_in_use "), "{text}");
    host.stop().await?;
    Ok(())
}

/// A tenant over its request rate gets 429 with `retry-after`; another
/// tenant's requests at the same time are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_rate_is_refused_for_that_tenant_only() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    let out = sluice(
        &host,
        Some(&key),
        &["tenant", "rate", "demo", "--rps", "1", "--burst", "3"],
    )?;
    assert!(String::from_utf8(out.stdout)?.contains("1 requests/s"));
    let shown = admin(
        &host,
        reqwest::Method::GET,
        "/v1/tenants/demo",
        Some(&key),
        None,
    )
    .await?;
    assert_eq!(
        shown.body["rate"],
        json!({"requests_per_second": 1.0, "burst": 3})
    );

    let alice = sluice_tests::token("alice", "demo", &[]);
    let ed = sluice_tests::token("ed", "acme", &["editor"]);
    let echo = json!({"name": "x", "age": 1});
    let (mut ok, mut limited, mut others_ok) = (0, 0, 0);
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let (demo, acme) = tokio::join!(
            host.get("/demo/todos", Some(&alice)),
            host.post("/acme/echo/x", Some(&ed), &echo),
        );
        let demo = demo?;
        match demo.status.as_u16() {
            200 => ok += 1,
            429 => {
                demo.assert_problem(429);
                let retry: u64 = demo.header("retry-after").parse()?;
                assert!((1..=2).contains(&retry), "retry-after {retry}");
                limited += 1;
            }
            other => bail!("unexpected status {other}: {}", demo.body),
        }
        if acme?.status.as_u16() == 200 {
            others_ok += 1;
        }
    }
    // Three from the burst, plus one per second the loop took to refill.
    let refilled = started.elapsed().as_secs_f64().ceil() as usize;
    assert!(
        ok >= 3 && ok <= 3 + refilled,
        "ok {ok}, limited {limited}, {refilled} s"
    );
    assert_eq!(ok + limited, 10);
    assert_eq!(others_ok, 10, "acme has no rate and is unaffected");

    sluice(&host, Some(&key), &["tenant", "rate", "demo", "--clear"])?;
    let after = host.get("/demo/todos", Some(&alice)).await?;
    assert_eq!(after.status.as_u16(), 200);
    host.stop().await?;
    Ok(())
}

/// A tenant with its own token settings accepts only tokens its own keys
/// verify, with its own claim names; other tenants keep the host's keys; the
/// settings survive a restart and never show their secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_can_have_its_own_keys() -> Result<()> {
    use reqwest::Method;
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    let k = Some(key.as_str());
    let secret = "demo-own-hs256-secret-0123456789abcdef";
    let pem = String::from_utf8(sluice_tests::read_fixture("rs256-public.pem"))?;
    let settings = json!({
        "keys": [
            {"algorithm": "HS256", "secret": secret},
            {"kid": "rsa", "algorithm": "RS256", "public_key_pem": pem},
        ],
        "tenant_claim": "org",
    });
    let set = admin(
        &host,
        Method::PUT,
        "/v1/tenants/demo/auth",
        k,
        Some(settings),
    )
    .await?;
    assert_eq!(set.status.as_u16(), 200, "body: {}", set.body);
    assert_eq!(set.body["auth"]["keys"][0]["algorithm"], "HS256");
    assert_eq!(set.body["auth"]["tenant_claim"], "org");
    let shown = String::from_utf8(set.raw.clone())?;
    assert!(
        !shown.contains(secret) && !shown.contains("BEGIN PUBLIC KEY"),
        "{shown}"
    );

    let claims = |tenant_claim: &str| {
        let mut c = sluice_tests::claims("alice", "demo", &[]);
        if let Some(o) = c.as_object_mut() {
            o.remove("tenant");
            o.insert(tenant_claim.into(), json!("demo"));
        }
        c
    };
    let tokens = Tokens {
        own: vec![
            sluice_tests::sign_hs256(&claims("org"), secret.as_bytes()),
            sluice_tests::sign_rs256(&claims("org")),
        ],
        host: sluice_tests::token("alice", "demo", &[]),
        other_tenant: sluice_tests::token("ed", "acme", &["editor"]),
    };

    check_own_keys(&host, &tokens).await?;

    for (bad, why) in [
        (json!({"keys": []}), "at least one key"),
        (
            json!({"keys": [{"algorithm": "HS256", "secret": "short"}]}),
            "32 bytes",
        ),
        (
            json!({"keys": [{"algorithm": "RS256", "public_key_file": "/etc/passwd"}]}),
            "reads no files",
        ),
        (
            json!({"keys": [{"algorithm": "RS256", "public_key_pem": "not a key"}]}),
            "public_key_pem",
        ),
    ] {
        let refused = admin(&host, Method::PUT, "/v1/tenants/demo/auth", k, Some(bad)).await?;
        refused.assert_problem(422);
        let detail = refused.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(why), "{why:?} not in {detail:?}");
    }

    let data = host.stop().await?;
    let host = TestHost::start_with(data, |_| {}).await?;
    check_own_keys(&host, &tokens).await?;
    let out = sluice(&host, k, &["tenant", "auth", "demo", "--clear"])?;
    assert!(String::from_utf8(out.stdout)?.contains("the host's token settings"));
    let back = host.get("/demo/todos", Some(&tokens.host)).await?;
    assert_eq!(back.status.as_u16(), 200);
    host.stop().await?;
    Ok(())
}

/// Tokens for [`check_own_keys`].
struct Tokens {
    /// Signed with demo's own keys, tenant in claim `org`.
    own: Vec<String>,
    /// Signed with the host's key.
    host: String,
    /// For acme, signed with the host's key.
    other_tenant: String,
}

/// demo takes only its own keys' tokens; acme still takes the host's.
async fn check_own_keys(host: &TestHost, tokens: &Tokens) -> Result<()> {
    for token in &tokens.own {
        let ok = host.get("/demo/todos", Some(token)).await?;
        assert_eq!(ok.status.as_u16(), 200, "body: {}", ok.body);
    }
    host.get("/demo/todos", Some(&tokens.host))
        .await?
        .assert_problem(401);
    let echo = json!({"name": "x", "age": 1});
    let acme = host
        .post("/acme/echo/x", Some(&tokens.other_tenant), &echo)
        .await?;
    assert_eq!(
        acme.status.as_u16(),
        200,
        "other tenants keep the host's keys"
    );
    Ok(())
}

/// Recent invocation records, newest first, over the API and with
/// `sluice invocations`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_invocations_are_listed() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    let alice = sluice_tests::token("alice", "demo", &[]);
    let mut ids = Vec::new();
    for title in ["first", "second"] {
        let created = host
            .post("/demo/todos", Some(&alice), &json!({"title": title}))
            .await?;
        assert_eq!(created.status.as_u16(), 201);
        ids.push(created.request_id().to_owned());
    }
    let path = "/v1/invocations?tenant=demo&function=todo&limit=2";
    let listed = admin(&host, reqwest::Method::GET, path, Some(&key), None).await?;
    assert_eq!(listed.status.as_u16(), 200, "body: {}", listed.body);
    let rows = listed.body["invocations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let listed_ids: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    assert_eq!(
        listed_ids,
        [ids[1].as_str(), ids[0].as_str()],
        "newest first"
    );
    assert_eq!(rows[0]["status"], 201);
    assert_eq!(rows[0]["outcome"], "ok");
    assert_eq!(rows[0]["route"], "POST /demo/todos");
    admin(
        &host,
        reqwest::Method::GET,
        "/v1/invocations?limit=0",
        Some(&key),
        None,
    )
    .await?
    .assert_problem(422);

    let out = sluice(
        &host,
        Some(&key),
        &["invocations", "--tenant", "demo", "--limit", "5"],
    )?;
    let text = String::from_utf8(out.stdout)?;
    assert!(
        text.contains(&ids[0]) && text.contains("demo/todo"),
        "{text}"
    );
    host.stop().await?;
    Ok(())
}

/// `max_stored_bytes`: writes that would take the tenant past it get 507
/// and commit nothing; deletes free room; other tenants are unaffected; the
/// usage kept by the committer equals what the documents hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_bytes_quota_refuses_writes_past_it() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    let quota = admin(
        &host,
        reqwest::Method::PUT,
        "/v1/tenants/acme/quota",
        Some(&key),
        Some(json!({ "max_stored_bytes": 200 })),
    )
    .await?;
    assert_eq!(quota.status.as_u16(), 200, "body: {}", quota.body);
    assert_eq!(quota.body["max_stored_bytes"], 200);
    let alice = sluice_tests::token("alice", "acme", &[]);
    // The probe stores {"key":"<key>"} under each key: 20 + 30 = 50 bytes each.
    let keys = |range: std::ops::Range<u32>| -> Vec<String> {
        range.map(|i| format!("key-{i:016}")).collect()
    };
    let put = |keys: Vec<String>| json!({ "put": keys, "prefix": "", "limit": 1 });
    let first = host
        .post("/acme/probe/documents", Some(&alice), &put(keys(0..3)))
        .await?;
    assert_eq!(first.status.as_u16(), 200, "body: {}", first.body);
    let over = host
        .post("/acme/probe/documents", Some(&alice), &put(keys(3..5)))
        .await?;
    over.assert_problem(507);
    assert_eq!(
        over.body["type"],
        "urn:sluice:problem:storage-quota-exceeded"
    );
    let detail = over.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("150 bytes of its 200-byte quota"),
        "{detail}"
    );
    let stored = "SELECT count(*) FROM documents WHERE tenant = 'acme' AND value IS NOT NULL";
    assert_eq!(
        host.count(stored, &[]).await?,
        3,
        "nothing of the refused request was written"
    );

    // Deleting frees room; a write that fits is accepted again.
    let delete = json!({ "delete": [keys(0..1)[0]], "prefix": "", "limit": 1 });
    let freed = host
        .post("/acme/probe/documents", Some(&alice), &delete)
        .await?;
    assert_eq!(freed.status.as_u16(), 200, "body: {}", freed.body);
    let fits = host
        .post("/acme/probe/documents", Some(&alice), &put(keys(3..4)))
        .await?;
    assert_eq!(fits.status.as_u16(), 200, "body: {}", fits.body);
    let usage = host
        .count(
            "SELECT stored_bytes FROM tenant_usage WHERE tenant = 'acme'",
            &[],
        )
        .await?;
    let actual = host
        .count(
            "SELECT CAST(SUM(length(key) + length(value)) AS BIGINT) FROM documents WHERE tenant = 'acme' AND value IS NOT NULL",
            &[],
        )
        .await?;
    assert_eq!((usage, actual), (150, 150));

    // Another tenant is not limited by acme's quota.
    let bob = sluice_tests::token("bob", "demo", &[]);
    let todo = host
        .post(
            "/demo/todos",
            Some(&bob),
            &json!({"title": "x".repeat(190)}),
        )
        .await?;
    assert_eq!(todo.status.as_u16(), 201, "body: {}", todo.body);

    // Lifting the quota lifts the limit.
    let lifted = admin(
        &host,
        reqwest::Method::PUT,
        "/v1/tenants/acme/quota",
        Some(&key),
        Some(json!({})),
    )
    .await?;
    assert_eq!(lifted.body["max_stored_bytes"], Value::Null);
    let now_fits = host
        .post("/acme/probe/documents", Some(&alice), &put(keys(10..20)))
        .await?;
    assert_eq!(now_fits.status.as_u16(), 200, "body: {}", now_fits.body);
    host.stop().await?;
    Ok(())
}

/// A JWKS document served on loopback: its body can change, its hits are counted.
struct JwksServer {
    url: String,
    body: std::sync::Arc<std::sync::Mutex<String>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    async fn start(body: String) -> Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr()?);
        let body = std::sync::Arc::new(std::sync::Mutex::new(body));
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, counted) = (body.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = served.lock().map(|b| b.clone()).unwrap_or_default();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        Ok(Self { url, body, hits })
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn serve(&self, body: String) {
        if let Ok(mut b) = self.body.lock() {
            *b = body;
        }
    }
}

/// The RS256 test key as a JWKS with one key named `kid`.
fn jwks_with(kid: &str) -> Result<String> {
    let mut jwk: Value =
        serde_json::from_slice(&sluice_tests::read_fixture("rs256-public.jwk.json"))?;
    jwk["kid"] = json!(kid);
    Ok(json!({ "keys": [jwk] }).to_string())
}

/// A tenant whose keys come from a JWKS URL: fetched (and checked) when
/// set; a token naming a rotated-in key makes the host fetch again; a burst
/// of made-up key ids costs at most one more fetch; other tenants keep the
/// host's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_can_take_its_keys_from_a_jwks_url() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    let jwks = JwksServer::start(jwks_with("k1")?).await?;

    let unreachable = admin(
        &host,
        reqwest::Method::PUT,
        "/v1/tenants/acme/auth",
        Some(&key),
        Some(json!({ "jwks_url": "http://127.0.0.1:9/nothing" })),
    )
    .await?;
    unreachable.assert_problem(422);
    assert!(
        unreachable.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("jwks_url")
    );

    let set = admin(
        &host,
        reqwest::Method::PUT,
        "/v1/tenants/acme/auth",
        Some(&key),
        Some(json!({ "jwks_url": jwks.url })),
    )
    .await?;
    assert_eq!(set.status.as_u16(), 200, "body: {}", set.body);
    assert_eq!(set.body["auth"]["jwks_url"], json!(jwks.url));
    assert_eq!(jwks.hits(), 1, "fetched once when set");

    let claims = sluice_tests::claims("alice", "acme", &[]);
    let route = "/acme/counters/jwks";
    let k1 = sluice_tests::sign_rs256_kid(&claims, "k1");
    let ok = host
        .send(host.client.post(host.url(route)).bearer_auth(&k1))
        .await?;
    assert_eq!(ok.status.as_u16(), 200, "a key from the JWKS: {}", ok.body);
    assert_eq!(jwks.hits(), 1, "served from the cache");

    // The provider rotates to k2. After the cooldown, a k2 token makes
    // the host fetch the set again, once.
    jwks.serve(jwks_with("k2")?);
    tokio::time::sleep(sluice_host::pipeline::authenticate::jwks::COOLDOWN).await;
    let k2 = sluice_tests::sign_rs256_kid(&claims, "k2");
    let rotated = host
        .send(host.client.post(host.url(route)).bearer_auth(&k2))
        .await?;
    assert_eq!(
        rotated.status.as_u16(),
        200,
        "the rotated key: {}",
        rotated.body
    );
    assert_eq!(jwks.hits(), 2);

    // Made-up key ids: 401, and no more fetches within the cooldown.
    for i in 0..20 {
        let forged = sluice_tests::sign_rs256_kid(&claims, &format!("made-up-{i}"));
        host.send(host.client.post(host.url(route)).bearer_auth(&forged))
            .await?
            .assert_problem(401);
    }
    assert_eq!(
        jwks.hits(),
        2,
        "unknown ids are not a way to hammer the provider"
    );
    // The host's own keys no longer open acme's routes, and still open demo's.
    let host_key = sluice_tests::token("alice", "acme", &[]);
    host.send(host.client.post(host.url(route)).bearer_auth(&host_key))
        .await?
        .assert_problem(401);
    let demo = sluice_tests::token("bob", "demo", &[]);
    assert_eq!(
        host.get("/demo/todos", Some(&demo)).await?.status.as_u16(),
        200
    );
    host.stop().await?;
    Ok(())
}

/// The CLI takes the admin URL and operator key from the config file's
/// `[cli]` section when no flag or environment variable gives them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_the_admin_url_and_key_from_the_config_file() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    let dir = tempfile::TempDir::new()?;
    let config = dir.path().join("sluice.toml");
    let run = |config_text: String, args: &[&str]| -> Result<std::process::Output> {
        std::fs::write(&config, config_text)?;
        Ok(std::process::Command::new(sluice_tests::sluice_binary()?)
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("SLUICE_ADMIN_URL")
            .env_remove("SLUICE_ADMIN_KEY")
            .output()?)
    };
    let with_key = format!("[cli]\nadmin_url = \"{}\"\nkey = \"{key}\"\n", host.admin);
    let out = run(with_key, &["tenant", "create", "from-config"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(out.stdout)?.contains("tenant from-config created"));

    let without_key = format!("[cli]\nadmin_url = \"{}\"\n", host.admin);
    let out = run(without_key, &["tenant", "list"])?;
    assert!(!out.status.success());
    let said = String::from_utf8(out.stderr)?;
    assert!(said.contains("an operator key is needed"), "{said}");
    host.stop().await?;
    Ok(())
}
