//! `sluice dev`: serves a crate, logs every request with its stages and the
//! function's output, swaps an edit in without a restart, keeps the last
//! good version through a build error and a manifest error, and stops
//! cleanly on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use sluice_tests::{HANG_GUARD, sluice_binary};

use super::{edit, generate};

/// The first build compiles the SDK for wasm32-wasip2 in this profile.
const FIRST_BUILD: Duration = Duration::from_secs(600);

/// `sluice dev` running, with what it printed so far.
struct Dev {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
}

impl Dev {
    fn start(dir: &std::path::Path, data: &std::path::Path) -> Result<Self> {
        let mut child = Command::new(sluice_binary()?)
            .arg("--data-dir")
            .arg(data)
            .args(["dev", "--listen", "127.0.0.1:0", "--fresh"])
            .arg(dir)
            .env("CARGO_TARGET_DIR", sluice_tests::root().join("target"))
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let out = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().context("no stdout")?;
        let lines = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("sluice dev | {line}");
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        });
        Ok(Self { child, out })
    }

    /// Every line printed so far.
    fn lines(&self) -> Vec<String> {
        self.out.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits for a line that `matches`; returns it.
    async fn line(
        &self,
        what: &str,
        within: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| matches(l)) {
                return Ok(line);
            }
            if Instant::now() > deadline {
                bail!(
                    "sluice dev never printed {what}; it printed:\n{}",
                    self.lines().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGINT, as Ctrl-C does; waits for the exit.
    async fn interrupt(&mut self) -> Result<std::process::ExitStatus> {
        let signal = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()?;
        assert!(signal.success());
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("sluice dev did not stop on Ctrl-C");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many printed lines `match`.
    fn count(&self, matches: impl Fn(&str) -> bool) -> usize {
        self.lines().iter().filter(|l| matches(l)).count()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_logs_and_swaps_edits_in() -> Result<()> {
    let parent = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    let dir = generate(parent.path(), "dev-loop", "http")?;
    let mut dev = Dev::start(&dir, data.path())?;
    dev.line("that it is ready", FIRST_BUILD, |l| {
        l.starts_with("ready in")
    })
    .await?;

    // The banner: each route with its address, a token and a curl.
    let route = dev
        .line("the create route", HANG_GUARD, |l| {
            l.contains("/demo/items  (create-item)")
        })
        .await?;
    let url = route
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .context("no URL in the route line")?
        .to_owned();
    let token_line = dev
        .line("a token", HANG_GUARD, |l| l.contains("export TOKEN="))
        .await?;
    let token = token_line
        .split("TOKEN=")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    dev.line("a curl to paste", HANG_GUARD, |l| {
        l.trim_start().starts_with("curl -i")
    })
    .await?;

    // A request: a line with its status and every stage's time.
    let client = reqwest::Client::builder().timeout(HANG_GUARD).build()?;
    let create = || {
        client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({ "name": "milk" }))
            .send()
    };
    let first = create().await?;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("x-edited").is_none());
    let logged = dev
        .line("the request's line", HANG_GUARD, |l| {
            l.contains("POST /demo/items 201")
        })
        .await?;
    for stage in ["authenticate", "validate", "process", "persist"] {
        assert!(
            logged.contains(&format!("· {stage} ")),
            "{stage} missing: {logged}"
        );
    }
    let refused = client
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(refused.status(), 422);
    dev.line("the refusal's line", HANG_GUARD, |l| {
        l.contains("POST /demo/items 422")
    })
    .await?;

    // An edit: a header and a line on stdout. Live without a restart.
    let lib = dir.join("src/lib.rs");
    let edited = Instant::now();
    edit(
        &lib,
        "    Response::created(&item)",
        "    println!(\"made {}\", item.id);\n    Ok(Response::created(&item)?.with_header(\"x-edited\", \"yes\"))",
    )?;
    let live = loop {
        let answer = create().await?;
        if answer.headers().get("x-edited").is_some() {
            break edited.elapsed();
        }
        assert_eq!(
            answer.status(),
            201,
            "the old version kept serving meanwhile"
        );
        if edited.elapsed() > FIRST_BUILD {
            bail!("the edit never went live:\n{}", dev.lines().join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    eprintln!("edit to live: {} ms", live.as_millis());
    dev.line("the reload", HANG_GUARD, |l| {
        l.starts_with("✓ reloaded demo/dev-loop v2")
    })
    .await?;
    dev.line("the function's output", HANG_GUARD, |l| {
        l.contains("│ stdout: made ")
    })
    .await?;

    // A build error: printed; the last good version keeps serving.
    let good = std::fs::read_to_string(&lib)?;
    std::fs::write(&lib, format!("{good}\nfn broken( {{\n"))?;
    dev.line("the build error", FIRST_BUILD, |l| {
        l.starts_with("✗ dev-loop")
    })
    .await?;
    let still = create().await?;
    assert_eq!(still.status(), 201);
    assert!(still.headers().get("x-edited").is_some());
    std::fs::write(&lib, &good)?;
    dev.line("the fixed build's reload", FIRST_BUILD, |l| {
        l.starts_with("✓ reloaded demo/dev-loop v3")
    })
    .await?;

    // A manifest error: a route no function serves. Refused, as a deploy
    // would be; the last good version keeps serving.
    let failures = dev.count(|l| l.starts_with("✗ dev-loop"));
    let manifest = dir.join("sluice.toml");
    let mut text = std::fs::read_to_string(&manifest)?;
    text.push_str("\n[[routes]]\nname = \"missing\"\nmethod = \"GET\"\npath = \"/missing\"\n");
    std::fs::write(&manifest, text)?;
    let deadline = Instant::now() + FIRST_BUILD;
    while dev.count(|l| l.starts_with("✗ dev-loop")) == failures {
        if Instant::now() > deadline {
            bail!(
                "the manifest error was not reported:\n{}",
                dev.lines().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refusal = dev
        .lines()
        .into_iter()
        .rfind(|l| l.starts_with("✗ dev-loop"))
        .unwrap_or_default();
    assert!(refusal.contains("missing"), "{refusal}");
    assert_eq!(create().await?.status(), 201);

    // Ctrl-C: a clean stop.
    let status = dev.interrupt().await?;
    assert!(status.success(), "{status}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(dev.lines().last().map(String::as_str), Some("stopped"));
    Ok(())
}
