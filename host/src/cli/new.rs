//! `sluice new NAME`: a function crate from a template (`host/templates/`),
//! with its manifest, schema, README and a test written with the test kit,
//! ready for `cargo test`, `sluice dev` and `sluice deploy`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use sluice_host::config::names;

/// What kind of function to start from.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Template {
    /// Routes over documents: `POST /items`, `GET /items/{id}`.
    Http,
    /// A route that sends messages and a consumer that counts them.
    Consumer,
    /// Uploads and downloads of files, streamed by the host.
    Files,
    /// A job on a schedule, with a route that reports its last run.
    Schedule,
}

/// `sluice new`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The crate's and the function's name: `a-z`, `0-9` and `-`.
    pub name: String,
    /// What kind of function to start from.
    #[arg(long, value_enum, default_value = "http")]
    pub template: Template,
    /// The directory to create (default: NAME in the current directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The tenant in the manifest.
    #[arg(long, default_value = "demo")]
    pub tenant: String,
    /// The `sdk/` directory of a Sluice checkout, to depend on the SDK and
    /// the test kit by path (default: the checkout this `sluice` was built
    /// from, if it is still there).
    #[arg(long)]
    pub sdk_path: Option<PathBuf>,
}

/// Written for every template: (path in the crate, contents).
const COMMON: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/common/Cargo.toml.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/common/gitignore.tmpl"),
    ),
];

/// A template's files: (path in the crate, contents of
/// `templates/<dir>/<path>`).
macro_rules! template {
    ($dir:literal: $($path:literal),+ $(,)?) => {
        &[$(($path, include_str!(concat!("../../templates/", $dir, "/", $path)))),+]
    };
}

const HTTP: &[(&str, &str)] = template!("http":
    "src/lib.rs", "sluice.toml", "schemas/new-item.json", "tests/items.rs", "README.md");

const CONSUMER: &[(&str, &str)] = template!("consumer":
    "src/lib.rs", "sluice.toml", "schemas/event.json", "tests/events.rs", "README.md");

const FILES: &[(&str, &str)] =
    template!("files": "src/lib.rs", "sluice.toml", "tests/files.rs", "README.md");

const SCHEDULE: &[(&str, &str)] =
    template!("schedule": "src/lib.rs", "sluice.toml", "tests/schedule.rs", "README.md");

impl Template {
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Template::Http => HTTP,
            Template::Consumer => CONSUMER,
            Template::Files => FILES,
            Template::Schedule => SCHEDULE,
        }
    }
}

/// Writes the crate; prints what to do next.
pub fn run(args: Args) -> Result<()> {
    if !names::is_valid_name(&args.name) || args.name.starts_with(|c: char| c.is_ascii_digit()) {
        bail!(
            "{:?} cannot name a function crate: use a-z, 0-9 and -, starting with a letter, at most 63 characters",
            args.name
        );
    }
    if !names::is_valid_name(&args.tenant) {
        bail!(
            "{:?} cannot name a tenant: use a-z, 0-9 and -, at most 63 characters",
            args.tenant
        );
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let (sdk, test_kit) = dependencies(args.sdk_path.as_deref())?;
    let values = [
        ("{{name}}", args.name.clone()),
        ("{{lib}}", args.name.replace('-', "_")),
        ("{{tenant}}", args.tenant.clone()),
        ("{{sdk}}", sdk),
        ("{{test_kit}}", test_kit),
    ];
    for (path, text) in COMMON.iter().chain(args.template.files()) {
        let mut text = (*text).to_owned();
        for (placeholder, value) in &values {
            text = text.replace(placeholder, value);
        }
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    let template =
        (args.template.to_possible_value()).map_or(String::new(), |v| v.get_name().to_owned());
    println!(
        "created {} (template {template}) in {}\n\n  cd {}\n  cargo test     # runs it on an embedded host\n  sluice dev     # serves it, reloading on every change",
        args.name,
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// The dependency specifications of `sluice-sdk` and `sluice-test`: by
/// path to a checkout when there is one, else by version.
fn dependencies(sdk_path: Option<&Path>) -> Result<(String, String)> {
    let sdk = match sdk_path {
        Some(path) => {
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("--sdk-path {}", path.display()))?;
            if !is_sdk(&path) {
                bail!(
                    "{} is not Sluice's sdk/ directory (no Cargo.toml of sluice-sdk)",
                    path.display()
                );
            }
            Some(path)
        }
        None => built_from(),
    };
    let Some(sdk) = sdk else {
        eprintln!(
            "warning: no Sluice checkout found; the crate depends on sluice-sdk and sluice-test by \
             version, and sluice-test is not on crates.io yet: pass --sdk-path to a checkout's sdk/"
        );
        let version = env!("CARGO_PKG_VERSION");
        return Ok((format!("\"{version}\""), format!("\"{version}\"")));
    };
    let quoted = |p: &Path| format!("{{ path = {:?} }}", p.display().to_string());
    Ok((quoted(&sdk), quoted(&sdk.join("test"))))
}

/// The `sdk/` of the checkout this binary was built from, if it is still there.
fn built_from() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.join("sdk");
    is_sdk(&sdk).then_some(sdk)
}

fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|text| text.contains("name = \"sluice-sdk\"") && dir.join("test").is_dir())
}
