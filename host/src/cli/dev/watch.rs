//! The crates `sluice dev` serves, and watching their files.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc::UnboundedSender;

/// Saves closer together than this are one change.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// A function crate: a `Cargo.toml` and a `sluice.toml`.
#[derive(Clone, Debug)]
pub struct FunctionCrate {
    /// Its directory, absolute.
    pub dir: PathBuf,
    /// The manifest's tenant.
    pub tenant: String,
    /// The manifest's function name.
    pub name: String,
}

/// The crates in `dirs`: each is a crate, or a directory of crates.
pub fn find_crates(dirs: &[PathBuf]) -> Result<Vec<FunctionCrate>> {
    let mut crates = Vec::new();
    for dir in dirs {
        let dir = std::fs::canonicalize(dir).with_context(|| format!("{}", dir.display()))?;
        if is_crate(&dir) {
            crates.push(function_crate(&dir)?);
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| is_crate(path))
            .collect();
        if found.is_empty() {
            return Err(super::not_a_crate(&dir));
        }
        found.sort();
        for path in found {
            crates.push(function_crate(&path)?);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for function in &crates {
        if !seen.insert((&function.tenant, &function.name)) {
            bail!(
                "two crates are function {}/{}; give one another name in its sluice.toml",
                function.tenant,
                function.name
            );
        }
    }
    Ok(crates)
}

fn is_crate(dir: &Path) -> bool {
    dir.join("Cargo.toml").is_file() && dir.join("sluice.toml").is_file()
}

fn function_crate(dir: &Path) -> Result<FunctionCrate> {
    let path = dir.join("sluice.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let (tenant, name) = names(&table, &path)?;
    Ok(FunctionCrate {
        dir: dir.to_owned(),
        tenant,
        name,
    })
}

/// The manifest's `tenant` and `name`.
pub fn names(manifest: &toml::Table, path: &Path) -> Result<(String, String)> {
    let get = |key: &str| {
        (manifest.get(key).and_then(|v| v.as_str()))
            .map(str::to_owned)
            .with_context(|| format!("{} names no {key}", path.display()))
    };
    Ok((get("tenant")?, get("name")?))
}

/// Watches every crate; sends a crate's index when a file its component or
/// manifest is made from changes. Watching stops when the result is dropped.
pub fn watch(
    crates: &[FunctionCrate],
    changes: UnboundedSender<usize>,
) -> Result<Debouncer<RecommendedWatcher, RecommendedCache>> {
    let dirs: Vec<PathBuf> = crates.iter().map(|c| c.dir.clone()).collect();
    let handler = move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        // Cargo reading the sources is no change.
        let changed: Vec<&Path> = (events.iter())
            .filter(|e| !matches!(e.kind, EventKind::Access(_)))
            .flat_map(|e| e.paths.iter().map(PathBuf::as_path))
            .collect();
        for (index, dir) in dirs.iter().enumerate() {
            if changed.iter().any(|path| is_source(dir, path)) {
                let _ = changes.send(index);
            }
        }
    };
    let mut debouncer = new_debouncer(DEBOUNCE, None, handler).context("watching files")?;
    for function in crates {
        debouncer
            .watch(&function.dir, RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", function.dir.display()))?;
    }
    Ok(debouncer)
}

/// True for a file of `dir`'s crate that the component or the deploy is
/// made from: sources, manifests, schemas, WIT. Not what the build itself
/// writes (`target/`), tests, or hidden files (editors' swap files, `.sluice`).
fn is_source(dir: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(dir) else {
        return false;
    };
    let mut parts = relative.components().filter_map(|c| match c {
        Component::Normal(part) => part.to_str(),
        _ => None,
    });
    let first = parts.next().unwrap_or_default();
    if matches!(first, "target" | "tests" | "benches" | "examples") {
        return false;
    }
    if relative.components().any(
        |c| matches!(c, Component::Normal(p) if p.to_str().is_some_and(|p| p.starts_with('.'))),
    ) {
        return false;
    }
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("rs" | "toml" | "json" | "wit")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_trigger_a_reload() {
        let dir = Path::new("/work/app");
        for source in [
            "src/lib.rs",
            "src/deep/mod.rs",
            "sluice.toml",
            "Cargo.toml",
            "schemas/a.json",
            "build.rs",
        ] {
            assert!(is_source(dir, &dir.join(source)), "{source}");
        }
        for other in [
            "target/wasm32-wasip2/guest/app.wasm",
            "target/debug/build/x/out.rs",
            "tests/app.rs",
            "src/.lib.rs.swp",
            ".sluice/dev/sluice.db",
            "README.md",
            "src/lib.rs~",
        ] {
            assert!(!is_source(dir, &dir.join(other)), "{other}");
        }
        assert!(!is_source(dir, Path::new("/elsewhere/src/lib.rs")));
    }
}
