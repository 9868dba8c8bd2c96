//! The guest developer's loop through the real `sluice` binary: `sluice new`
//! makes crates whose own `cargo test` passes, and `sluice dev` serves a
//! crate and swaps each edit in.
//!
//! The generated crates build in this repository's target directory with a
//! copy of its `Cargo.lock`, so what the workspace compiled is reused.

mod dev;
mod new;

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};
use sluice_tests::{root, sluice_binary};

/// `sluice new NAME --template TEMPLATE` into `parent/NAME`, depending on
/// this checkout's SDK; returns the crate's directory.
fn generate(parent: &Path, name: &str, template: &str) -> Result<std::path::PathBuf> {
    let dir = parent.join(name);
    let output = Command::new(sluice_binary()?)
        .args(["new", name, "--template", template, "--dir"])
        .arg(&dir)
        .arg("--sdk-path")
        .arg(root().join("sdk"))
        .output()?;
    check(&output, "sluice new")?;
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock"))?;
    Ok(dir)
}

/// `cargo` with the repository's target directory.
fn cargo(dir: &Path) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", root().join("target"));
    command
}

/// Fails with the command's output unless it succeeded.
fn check(output: &Output, what: &str) -> Result<()> {
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Replaces `from` with `to` in `file`, which must contain it.
fn edit(file: &Path, from: &str, to: &str) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    if !text.contains(from) {
        bail!("{} has no {from:?}", file.display());
    }
    std::fs::write(file, text.replacen(from, to, 1))?;
    Ok(())
}
