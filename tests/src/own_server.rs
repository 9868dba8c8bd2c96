//! A throw-away server a test process starts itself (when `scripts/test.sh`
//! did not start one for the run), stopped when the process exits.

use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use crate::root;

/// A server this process started with one of the `scripts/*.sh` that take
/// `start DIR` and `stop DIR`.
pub struct OwnServer {
    /// What `start` printed: the server's URL.
    pub url: String,
    /// The directory it runs in.
    pub dir: PathBuf,
    /// The write end of the stdin of a watcher that stops the server at EOF,
    /// i.e. when this process exits, however it exits. Never written.
    _stop_on_exit: ChildStdin,
}

impl OwnServer {
    /// The server `script` starts, started on first use; every later call
    /// gets the same one, or the same reason it could not start.
    pub fn get<'a>(
        cell: &'a OnceLock<Result<OwnServer, String>>,
        script: &str,
        scheme: &str,
    ) -> Result<&'a OwnServer, String> {
        // anyhow::Error is not Clone: keep the message, so every test that
        // needs the server fails with the same reason.
        cell.get_or_init(|| Self::start(script, scheme).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Starts a server in a temporary directory, and a watcher process that
    /// stops it and removes the directory once this process has exited.
    fn start(script: &str, scheme: &str) -> Result<Self> {
        let script = root().join("scripts").join(script);
        let dir: PathBuf = std::env::temp_dir().join(format!(
            "sluice-test-server-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        // Started first, so that a failed start is cleaned up too. It waits
        // for EOF on its stdin, which comes when this process exits (the pipe
        // is close-on-exec: hosts do not inherit it), and ignores the
        // terminal's signals so that Ctrl-C on the test run still stops the
        // server.
        let mut watcher = Command::new("bash")
            .arg("-c")
            .arg(r#"trap '' INT TERM HUP; cat >/dev/null; exec bash "$0" stop "$1""#)
            .arg(&script)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the server's watcher")?;
        let stdin = watcher.stdin.take().context("watcher has no stdin")?;
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} start failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let url = String::from_utf8(out.stdout)?.trim().to_owned();
        if !url.starts_with(scheme) {
            bail!("{} start printed {url:?}, not a URL", script.display());
        }
        Ok(Self {
            url,
            dir,
            _stop_on_exit: stdin,
        })
    }
}
