//! `sluice deploy CRATE_DIR`: builds the crate for wasm32-wasip2 with cargo,
//! showing a progress bar, and finds the component it produced.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// The target functions are built for.
const TARGET: &str = "wasm32-wasip2";

/// The profile functions are built with: release, optimized for size,
/// without debug information. Defined on cargo's command line, so that a
/// crate outside this repository, which has no such profile, builds with
/// it too.
pub const GUEST_PROFILE: &str = "guest";

/// Builds the crate in `dir` with `profile`; returns the component's path.
pub fn build(dir: &Path, profile: &str) -> Result<PathBuf> {
    ensure_target()?;
    let manifest = std::fs::canonicalize(dir.join("Cargo.toml"))
        .with_context(|| format!("{} has no Cargo.toml", dir.display()))?;
    let package = package_name(&manifest)?;
    let bar = progress_bar(units_to_build(&manifest).unwrap_or(0));
    bar.set_message(format!("building {package} for {TARGET}"));
    let mut command = Command::new(cargo());
    command.args(["build", "--target", TARGET, "--profile", profile]);
    if profile == GUEST_PROFILE {
        for setting in sluice_host::config::GUEST_PROFILE_CONFIG {
            command.args(["--config", setting]);
        }
    }
    let mut child = command
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo")?;
    let stderr = child.stderr.take();
    // Cargo's own progress and diagnostics go to stderr: keep them for a
    // failure, without blocking cargo on a full pipe.
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(stderr) = stderr {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    });
    let mut component = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if message["reason"] != "compiler-artifact" {
                continue;
            }
            bar.inc(1);
            let name = message["target"]["name"].as_str().unwrap_or_default();
            bar.set_message(format!("compiled {name}"));
            let ours = message["manifest_path"]
                .as_str()
                .and_then(|p| std::fs::canonicalize(p).ok())
                .is_some_and(|p| p == manifest);
            if ours {
                component = message["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .find(|f| f.ends_with(".wasm"))
                    .map(PathBuf::from);
            }
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    let errors = errors.join().unwrap_or_default();
    bar.finish_and_clear();
    if !status.success() {
        eprint!("{errors}");
        bail!("cargo build of {} failed", dir.display());
    }
    component.with_context(|| {
        format!(
            "cargo built {package} but no .wasm came out; is it a cdylib (crate-type = [\"cdylib\"])?"
        )
    })
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Installs the wasm32-wasip2 target with rustup when it is missing.
fn ensure_target() -> Result<()> {
    let Ok(output) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        // No rustup: let cargo say whether the target is there.
        return Ok(());
    };
    if String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!("installing the {TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("`rustup target add {TARGET}` failed");
    }
    Ok(())
}

/// The `[package] name` of the crate.
fn package_name(manifest: &Path) -> Result<String> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", manifest.display()))?;
    doc.get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no [package] name", manifest.display()))
}

/// How many packages the build will compile at most: the bar's length.
fn units_to_build(manifest: &Path) -> Option<u64> {
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            TARGET,
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let metadata: Value = serde_json::from_slice(&output.stdout).ok()?;
    let nodes = metadata["resolve"]["nodes"].as_array()?;
    Some(nodes.len() as u64)
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
