//! `sluice new`: every template is a crate whose `cargo test` passes as
//! generated, on the real host the test kit embeds.

use anyhow::{Result, bail};

use super::{cargo, check, generate};

/// Generates `template` and runs the crate's own tests.
fn passes_its_tests(template: &str) -> Result<()> {
    let parent = tempfile::tempdir()?;
    // Unique names: the components share the target directory.
    let dir = generate(parent.path(), &format!("new-{template}"), template)?;
    for file in [
        "Cargo.toml",
        "sluice.toml",
        "src/lib.rs",
        "README.md",
        ".gitignore",
    ] {
        if !dir.join(file).is_file() {
            bail!("the {template} template made no {file}");
        }
    }
    let output = cargo(&dir).args(["test", "--quiet"]).output()?;
    check(&output, "cargo test of the generated crate")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.contains("test result: ok. 1 passed") {
        bail!("the generated test did not run:\n{stdout}");
    }
    Ok(())
}

#[test]
fn the_http_template_passes_its_tests() -> Result<()> {
    passes_its_tests("http")
}

#[test]
fn the_consumer_template_passes_its_tests() -> Result<()> {
    passes_its_tests("consumer")
}

#[test]
fn the_files_template_passes_its_tests() -> Result<()> {
    passes_its_tests("files")
}

#[test]
fn the_schedule_template_passes_its_tests() -> Result<()> {
    passes_its_tests("schedule")
}

/// A name no crate or function may have, and a directory that is not empty,
/// are refused before anything is written.
#[test]
fn bad_names_and_full_directories_are_refused() -> Result<()> {
    let parent = tempfile::tempdir()?;
    let sluice = sluice_tests::sluice_binary()?;
    let output = std::process::Command::new(&sluice)
        .current_dir(parent.path())
        .args(["new", "Bad_Name"])
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stderr.contains("cannot name a function crate") {
        bail!("a bad name was not refused: {stderr}");
    }
    std::fs::create_dir(parent.path().join("taken"))?;
    std::fs::write(parent.path().join("taken/keep.txt"), "mine")?;
    let output = std::process::Command::new(&sluice)
        .current_dir(parent.path())
        .args(["new", "taken"])
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stderr.contains("not empty") {
        bail!("a full directory was not refused: {stderr}");
    }
    if std::fs::read_dir(parent.path().join("taken"))?.count() != 1 {
        bail!("something was written into the full directory");
    }
    Ok(())
}
