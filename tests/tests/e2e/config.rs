//! Tenants' configuration and secrets: set with `sluice tenant config`,
//! read by the tenant's functions through `sluice:function/config` (a
//! function's own value winning over the tenant's), sealed at rest, never
//! answered back, blanked out of what a guest prints, unreadable from
//! another tenant, and carried across a key rotation.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sluice_tests::postgres::{Backend, backend};
use sluice_tests::{Process, Reply, TestHost, admin, db, operator_key, root, send, sluice_command};
use sqlx::Row;

/// Two keys, as `sluice secrets new-key` makes them.
const KEY_1: &str = "6q3qkVpX7yGIEtV0gqXlAfY6w2pbqmoAq5lUF9uNvXo=";
const KEY_2: &str = "r2M0n5G8mQ0eG4hC0k3H3P8x1V9cZ2bq7oWm4Tt5YkU=";

const SECRET: &str = "sk_live_51HxTopSecret";

/// A host process on `data` whose secrets key is `key` (and `previous`).
fn host(data: &Path, key: &str, previous: &str) -> Result<Process> {
    let env = [
        ("SLUICE_SECRETS_KEY", key),
        ("SLUICE_SECRETS_PREVIOUS_KEYS", previous),
    ];
    Process::start_with_env(data, &[root().join("tests/guests")], "", &env)
}

/// Runs `sluice ARGS` against `process`'s admin API, with `stdin` piped in.
fn cli(data: &Path, process: &Process, key: &str, args: &[&str], stdin: &str) -> Result<String> {
    use std::io::Write;
    let mut child = sluice_command(data)?
        .args(["--admin-url", &process.admin_url()?, "--key", key])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "sluice {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// A new operator key on `data`'s database.
fn key_for(data: &Path) -> Result<String> {
    let out = sluice_command(data)?
        .args(["key", "create", "--name", "config-tests"])
        .output()?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// The configuration values `names` as acme's echo function reads them.
async fn read_as(process: &Process, path: &str, names: &str) -> Result<Value> {
    let url = format!("{}{path}?config={names}", process.base);
    let got = send(reqwest::Client::new().get(url)).await?;
    if got.status != 200 {
        bail!("{path}: {} {}", got.status, got.body);
    }
    Ok(got.body["config"].clone())
}

/// An admin call on `process`.
async fn call(
    process: &Process,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Reply> {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", process.admin_url()?))
        .bearer_auth(key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    send(req).await
}

/// Deploys the echo guest to `tenant` as `echo`, behind a public GET route.
async fn deploy_echo_to(process: &Process, key: &str, tenant: &str) -> Result<()> {
    let made = call(
        process,
        key,
        Method::POST,
        "/v1/tenants",
        Some(json!({ "name": tenant })),
    )
    .await?;
    assert_eq!(made.status, 201, "{}", made.body);
    let wasm = std::fs::read(root().join("target/wasm32-wasip2/guest/echo.wasm"))?;
    let manifest = "[[routes]]\nmethod = \"GET\"\npath = \"/echo/{a}\"\nauth = \"public\"\n";
    let form = Form::new()
        .part("manifest", Part::text(manifest).file_name("sluice.toml"))
        .part("component", Part::bytes(wasm).file_name("component.wasm"));
    let url = format!(
        "{}/v1/tenants/{tenant}/functions/echo/versions",
        process.admin_url()?
    );
    let deployed = send(
        reqwest::Client::new()
            .post(url)
            .bearer_auth(key)
            .multipart(form),
    )
    .await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_read_their_tenants_values_and_secrets_stay_secret() -> Result<()> {
    let data = tempfile::TempDir::new()?;
    let host = host(data.path(), KEY_1, "")?;
    let key = key_for(data.path())?;
    let (d, h) = (data.path(), &host);
    cli(
        d,
        h,
        &key,
        &["tenant", "config", "set", "acme", "GREETING", "hello"],
        "",
    )?;
    // The secret from stdin, as the docs advise, with echo's newline.
    let said = cli(
        d,
        h,
        &key,
        &["tenant", "config", "set", "acme", "API_KEY", "--secret"],
        &format!("{SECRET}\n"),
    )?;
    assert!(said.contains("secret API_KEY set"), "{said}");
    let own = [
        "tenant",
        "config",
        "set",
        "acme",
        "GREETING",
        "hi from echo's own value",
        "--function",
        "echo",
    ];
    cli(d, h, &key, &own, "")?;

    let read = read_as(h, "/acme/echo/x", "GREETING,API_KEY,MISSING").await?;
    assert_eq!(
        read,
        json!({ "GREETING": "hi from echo's own value", "API_KEY": SECRET, "MISSING": null })
    );

    // Listed: values shown, the secret by name, its key's id and no value.
    let listed = call(h, &key, Method::GET, "/v1/tenants/acme/config", None).await?;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(!listed.body.to_string().contains(SECRET), "{}", listed.body);
    let entries = listed.body["config"].as_array().context("no list")?;
    let secret = entries
        .iter()
        .find(|e| e["name"] == "API_KEY")
        .context("API_KEY not listed")?;
    assert_eq!(secret["secret"], true);
    assert!(secret.get("value").is_none(), "{secret}");
    assert_eq!(secret["sealed_with"].as_str().map(str::len), Some(8));
    // Who set it: the operator key's id, never the key.
    let by = secret["updated_by"].as_str().unwrap_or_default();
    assert!(!by.is_empty() && by != key, "{secret}");
    let tenant_wide = entries
        .iter()
        .find(|e| e["name"] == "GREETING" && e["function"].is_null())
        .context("the tenant's GREETING not listed")?;
    assert_eq!(tenant_wide["value"], "hello");
    let text = cli(d, h, &key, &["tenant", "config", "list", "acme"], "")?;
    assert!(text.contains("API_KEY") && !text.contains(SECRET), "{text}");

    // Sealed at rest: no row holds the secret in the clear.
    let pool = db(d).await?;
    let rows = sqlx::query("SELECT value FROM tenant_config")
        .fetch_all(&pool)
        .await?;
    assert_eq!(rows.len(), 3);
    for row in rows {
        let stored: String = row.get(0);
        assert!(!stored.contains(SECRET), "stored in the clear: {stored}");
    }

    // The guest printed both; the log has the value, and the secret blanked.
    sluice_tests::eventually("the guest's output in the log", || async {
        Ok(host
            .log()
            .iter()
            .any(|l| l.contains("echo config API_KEY=[redacted]"))
            .then_some(()))
    })
    .await?;
    let log = host.log();
    assert!(
        log.iter()
            .any(|l| l.contains("echo config GREETING=hi from echo's own value"))
    );
    let leaked: Vec<_> = log.iter().filter(|l| l.contains(SECRET)).collect();
    assert!(leaked.is_empty(), "the secret reached the log: {leaked:?}");

    // Another tenant's function, the same component, reads none of it.
    deploy_echo_to(h, &key, "cfg-other").await?;
    let other = read_as(h, "/cfg-other/echo/x", "GREETING,API_KEY").await?;
    assert_eq!(other, json!({ "GREETING": null, "API_KEY": null }));

    // Unset the function's own value: the tenant's shows through.
    let unset = [
        "tenant",
        "config",
        "unset",
        "acme",
        "GREETING",
        "--function",
        "echo",
    ];
    cli(d, h, &key, &unset, "")?;
    let read = read_as(h, "/acme/echo/x", "GREETING").await?;
    assert_eq!(read, json!({ "GREETING": "hello" }));

    // Refusals, each a problem.
    let bad = call(
        h,
        &key,
        Method::PUT,
        "/v1/tenants/acme/config/1-bad",
        Some(json!({ "value": "x" })),
    )
    .await?;
    bad.assert_problem(422);
    let nobody = call(
        h,
        &key,
        Method::PUT,
        "/v1/tenants/nobody/config/X",
        Some(json!({ "value": "x" })),
    )
    .await?;
    nobody.assert_problem(404);
    let big = "x".repeat(65_537);
    let huge = call(
        h,
        &key,
        Method::PUT,
        "/v1/tenants/acme/config/X",
        Some(json!({ "value": big })),
    )
    .await?;
    huge.assert_problem(422);
    let gone = call(
        h,
        &key,
        Method::DELETE,
        "/v1/tenants/acme/config/NEVER_SET",
        None,
    )
    .await?;
    gone.assert_problem(404);
    let anonymous =
        send(reqwest::Client::new().get(format!("{}/v1/tenants/acme/config", h.admin_url()?)))
            .await?;
    anonymous.assert_problem(401);
    host.kill()
}

/// A rotation: the new key takes over with the old one kept, a reseal moves
/// every secret to the new key, and then the old key can go. A host with
/// neither key reads none, says so in its log by name, and leaks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_survive_a_key_rotation() -> Result<()> {
    let data = tempfile::TempDir::new()?;
    let d = data.path();
    let first = host(d, KEY_1, "")?;
    let key = key_for(d)?;
    cli(
        d,
        &first,
        &key,
        &["tenant", "config", "set", "acme", "API_KEY", "--secret"],
        SECRET,
    )?;
    let sealed_with = |listed: &Reply| listed.body["config"][0]["sealed_with"].clone();
    let old_id =
        sealed_with(&call(&first, &key, Method::GET, "/v1/tenants/acme/config", None).await?);
    first.kill()?;

    let both = host(d, KEY_2, KEY_1)?;
    let read = read_as(&both, "/acme/echo/x", "API_KEY").await?;
    assert_eq!(
        read,
        json!({ "API_KEY": SECRET }),
        "read under the previous key"
    );
    let said = cli(d, &both, &key, &["secrets", "reseal"], "")?;
    assert!(said.starts_with("1 secret(s) resealed"), "{said}");
    let new_id =
        sealed_with(&call(&both, &key, Method::GET, "/v1/tenants/acme/config", None).await?);
    assert_ne!(new_id, old_id);
    both.kill()?;

    let second = host(d, KEY_2, "")?;
    let read = read_as(&second, "/acme/echo/x", "API_KEY").await?;
    assert_eq!(
        read,
        json!({ "API_KEY": SECRET }),
        "read under the new key alone"
    );
    second.kill()?;

    let stranger = host(d, KEY_1, "")?;
    let read = read_as(&stranger, "/acme/echo/x", "API_KEY").await?;
    assert_eq!(read, json!({ "API_KEY": null }));
    let log = stranger.log();
    assert!(
        log.iter()
            .any(|l| l.contains("a secret cannot be opened") && l.contains("API_KEY")),
        "{log:#?}"
    );
    assert!(!log.iter().any(|l| l.contains(SECRET)));
    stranger.kill()
}

/// Without a configured key, a host on SQLite makes its own in the data
/// directory (owner-only); hosts on PostgreSQL, which share secrets, must
/// be given one, and refuse secrets until they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_key() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    let body = json!({ "value": SECRET, "secret": true });
    let set = admin(
        &host,
        Method::PUT,
        "/v1/tenants/acme/config/API_KEY",
        Some(&key),
        Some(body),
    )
    .await?;
    match backend() {
        Backend::Sqlite => {
            assert_eq!(set.status, 200, "{}", set.body);
            let file = host.data().join("secrets-key");
            let mode =
                std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file)?.permissions());
            assert_eq!(mode & 0o777, 0o600);
            let got = host.get("/acme/echo/x?config=API_KEY", None).await?;
            assert_eq!(got.body["config"]["API_KEY"], SECRET);
        }
        Backend::Postgres => {
            set.assert_problem(409);
            assert_eq!(
                set.body["type"]
                    .as_str()
                    .map(|t| t.ends_with("secrets-key-missing")),
                Some(true)
            );
            // Plain values need no key.
            let plain = json!({ "value": "hello" });
            let set = admin(
                &host,
                Method::PUT,
                "/v1/tenants/acme/config/GREETING",
                Some(&key),
                Some(plain),
            )
            .await?;
            assert_eq!(set.status, 200, "{}", set.body);
            let got = host.get("/acme/echo/x?config=GREETING", None).await?;
            assert_eq!(got.body["config"]["GREETING"], "hello");
        }
    }
    Ok(())
}
