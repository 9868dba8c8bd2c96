//! The operators' console in a real browser: a real `sluice serve` with a
//! dead letter and some traffic, then `host/console/tests/console.test.mjs`
//! (Debian's Chromium driven by playwright-core) signs in, creates a
//! tenant, deploys a function, finds its invocation and replays the dead
//! letter through the pages. Each page's screenshot is kept in
//! `target/console-screenshots/`. What the browser did is then checked
//! through the admin API.
//!
//! Needs Node.js, the console's packages and Chromium: `scripts/test.sh`
//! installs them (through `scripts/console.sh --browser`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use sluice_tests::{Process, eventually, root, sluice_command, token};
use tempfile::TempDir;

/// The tenant the browser creates and deploys to.
const TENANT: &str = "console-co";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_through_the_console() -> Result<()> {
    let chromium = chromium()?;
    let data = TempDir::new()?;
    let host = Process::start(data.path(), &[root().join("tests/guests")])?;
    let admin = host.admin_url()?;
    let key = operator_key(data.path())?;
    let client = reqwest::Client::builder()
        .timeout(sluice_tests::HANG_GUARD)
        .build()?;
    let call = |method: Method, path: String| {
        client
            .request(method, format!("{admin}{path}"))
            .bearer_auth(&key)
    };

    // Traffic for the charts, and a message its consumer gives up on.
    for n in 0..5 {
        let reply = client
            .get(format!("{}/acme/echo/warm-{n}", host.base))
            .send()
            .await?;
        ensure!(reply.status() == 200, "echo answered {}", reply.status());
    }
    let sent = client
        .post(format!("{}/acme/consumer/send", host.base))
        .bearer_auth(token("ops", "acme", &[]))
        .json(&json!({"topic": "jobs", "payload": {"op": "give-up", "key": "hopeless"}}))
        .send()
        .await?;
    ensure!(sent.status() == 202, "send answered {}", sent.status());
    let letter_id = eventually("the dead letter", || async {
        let body: Value = call(Method::GET, "/v1/dead-letters?tenant=acme".into())
            .send()
            .await?
            .json()
            .await?;
        Ok(body["dead_letters"][0]["id"].as_str().map(str::to_owned))
    })
    .await?;

    // What the browser deploys: echo, with its schema, and a manifest the
    // host refuses.
    let deploy = TempDir::new()?;
    std::fs::write(
        deploy.path().join("sluice.toml"),
        "[[routes]]\nmethod = \"GET\"\npath = \"/echo/{a}\"\nauth = \"authenticated\"\n\n\
         [[routes]]\nmethod = \"POST\"\npath = \"/echo/{a}\"\nauth = \"authenticated\"\n\
         schema = \"schemas/echo.json\"\n",
    )?;
    std::fs::write(
        deploy.path().join("broken.toml"),
        "[[routes]]\nmethod = \"GET\"\npath = \"no-slash\"\n",
    )?;
    std::fs::copy(
        root().join("tests/guests/echo/schemas/echo.json"),
        deploy.path().join("echo.json"),
    )?;
    std::fs::copy(
        root().join("target/wasm32-wasip2/guest/echo.wasm"),
        deploy.path().join("component.wasm"),
    )
    .context("the echo guest is not built: run scripts/build-guests.sh")?;

    let screenshots = root().join("target/console-screenshots");
    let mut node = Command::new("node");
    node.current_dir(root().join("host/console"))
        .args(["--test", "--test-reporter=spec", "tests/console.test.mjs"])
        .env("CONSOLE_URL", format!("{admin}/console/"))
        .env("PUBLIC_URL", &host.base)
        .env("OPERATOR_KEY", &key)
        .env("TENANT_TOKEN", token("ops", TENANT, &[]))
        .env("CONSOLE_TENANT", TENANT)
        .env("DEPLOY_DIR", deploy.path())
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium);
    let (ok, said) =
        tokio::task::spawn_blocking(move || run(node, Duration::from_secs(300))).await??;
    eprintln!("{said}");
    ensure!(ok, "the browser tests failed:\n{said}");

    // What the browser did, seen through the API.
    let tenant: Value = call(Method::GET, format!("/v1/tenants/{TENANT}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(tenant["rate"]["requests_per_second"], 50.0, "{tenant}");
    assert_eq!(tenant["max_functions"], 3, "{tenant}");
    assert_eq!(tenant["usage"]["functions"], 1, "{tenant}");
    let versions: Value = call(
        Method::GET,
        format!("/v1/tenants/{TENANT}/functions/echo/versions"),
    )
    .send()
    .await?
    .json()
    .await?;
    let live: Vec<u64> = (versions["versions"].as_array().into_iter().flatten())
        .filter(|v| v["active"] == true)
        .filter_map(|v| v["version"].as_u64())
        .collect();
    assert_eq!(live, [1], "rolled back to v1: {versions}");
    // The replayed letter ran again: a second give-up on record.
    eventually("the replayed message's run", || async {
        let body: Value = call(
            Method::GET,
            "/v1/invocations?tenant=acme&function=consumer&outcome=give-up".into(),
        )
        .send()
        .await?
        .json()
        .await?;
        let runs = body["invocations"].as_array().map_or(0, Vec::len);
        Ok((runs >= 2).then_some(()))
    })
    .await
    .with_context(|| format!("dead letter {letter_id} was not replayed"))?;
    for page in [
        "sign-in-refused",
        "overview",
        "tenants",
        "tenant",
        "functions",
        "function-versions",
        "invocations",
        "invocation",
        "dead-letters",
        "dead-letter",
    ] {
        let shot = screenshots.join(format!("{page}.png"));
        let size = std::fs::metadata(&shot)
            .with_context(|| format!("no screenshot {}", shot.display()))?
            .len();
        assert!(size > 10_000, "{} is only {size} bytes", shot.display());
    }
    Ok(())
}

/// The console page and its files: served without a key, under the CSP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_a_strict_policy() -> Result<()> {
    let data = TempDir::new()?;
    let host = Process::start(data.path(), &[])?;
    let admin = host.admin_url()?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(sluice_tests::HANG_GUARD)
        .build()?;
    let bare = client.get(format!("{admin}/console")).send().await?;
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/console/");
    let page = client.get(format!("{admin}/console/")).send().await?;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()?
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await?;
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style: {html}"
    );
    // Every file the page names is served, with a type and a long cache.
    let assets: Vec<&str> = html
        .split('"')
        .filter(|s| s.starts_with("/console/assets/"))
        .collect();
    assert!(assets.len() >= 2, "{html}");
    for asset in assets {
        let file = client.get(format!("{admin}{asset}")).send().await?;
        assert_eq!(file.status(), 200, "{asset}");
        assert!(
            file.headers()["cache-control"]
                .to_str()?
                .contains("immutable")
        );
        let kind = file.headers()["content-type"].to_str()?;
        assert!(
            kind.starts_with("text/javascript") || kind.starts_with("text/css"),
            "{asset}: {kind}"
        );
    }
    let missing = client
        .get(format!("{admin}/console/assets/nope.js"))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    // The data is not: the API still wants a key.
    let data = client.get(format!("{admin}/v1/tenants")).send().await?;
    assert_eq!(data.status(), 401);
    Ok(())
}

/// Chromium, as `scripts/console.sh --browser` installs it.
fn chromium() -> Result<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !path.is_file() {
        bail!(
            "{} is missing: run `bash scripts/console.sh --browser` (scripts/test.sh does)",
            path.display()
        );
    }
    if !root()
        .join("host/console/node_modules/playwright-core")
        .is_dir()
    {
        bail!("the console's packages are missing: run `bash scripts/console.sh`");
    }
    Ok(path)
}

/// A new operator key on the host's database.
fn operator_key(data: &Path) -> Result<String> {
    let out = sluice_command(data)?
        .args(["key", "create", "--name", "console"])
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Runs `command` to its end or for `limit` at most: did it succeed, and
/// what it printed.
fn run(mut command: Command, limit: Duration) -> Result<(bool, String)> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start node: install Node.js (scripts/console.sh does)")?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let mut stderr = child.stderr.take().context("no stderr")?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let said = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(status) => Ok((status.success(), said)),
        None => Ok((false, format!("{said}\n(stopped after {limit:?})"))),
    }
}
