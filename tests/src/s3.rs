//! The S3-compatible object store for the tests: one throw-away s3s-fs
//! server per run (`scripts/s3.sh`), a key prefix per host.
//!
//! `scripts/test.sh` starts the server once and passes its endpoint in
//! `SLUICE_TEST_S3` and its directory in `SLUICE_TEST_S3_DIR`; a test
//! process started some other way starts its own on first use. With
//! `SLUICE_TEST_BLOBS=s3` every test host keeps its blobs there instead of
//! in its data directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use sluice_host::config::{BlobStoreKind, BlobsConfig};

use crate::own_server::OwnServer;

/// The bucket `scripts/s3.sh` creates.
pub const BUCKET: &str = "sluice-tests";

/// The server's access key.
pub const ACCESS_KEY: &str = "sluice-test";

/// The server's secret key.
pub const SECRET_KEY: &str = "sluice-test-secret";

/// Where blobs live for the test hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blobs {
    /// `blobs/` in the host's data directory (the default).
    Local,
    /// The test S3 server.
    Bucket,
}

/// The blob storage chosen by `SLUICE_TEST_BLOBS` (`local`, the default, or
/// `s3`).
///
/// # Panics
///
/// On any other value: a typo must not quietly run the suite on local files.
pub fn blobs() -> Blobs {
    static BLOBS: OnceLock<Blobs> = OnceLock::new();
    *BLOBS.get_or_init(
        || match std::env::var("SLUICE_TEST_BLOBS").as_deref().unwrap_or("") {
            "" | "local" => Blobs::Local,
            "s3" => Blobs::Bucket,
            other => panic!("SLUICE_TEST_BLOBS={other:?}: expected `local` or `s3`"),
        },
    )
}

/// Tests of what only blob files in a directory do (paths, symlinks): the
/// bucket pass leaves them out by name (`scripts/test.sh`'s `--skip`). Run
/// there anyway, such a test fails saying so.
pub fn local_only(why: &str) -> Result<(), String> {
    match blobs() {
        Blobs::Local => Ok(()),
        Blobs::Bucket => Err(format!(
            "this test applies to blob directories only ({why}); the bucket pass skips it"
        )),
    }
}

/// The test server: its endpoint and the directory it keeps buckets in.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The directory holding one subdirectory per bucket.
    pub root: PathBuf,
}

/// The test S3 server: `SLUICE_TEST_S3` (with `SLUICE_TEST_S3_DIR`) if set,
/// otherwise one this process starts on first use (building s3s-fs first
/// on a new machine).
pub fn server() -> Result<Server> {
    if let Ok(endpoint) = std::env::var("SLUICE_TEST_S3")
        && !endpoint.is_empty()
    {
        let dir = std::env::var("SLUICE_TEST_S3_DIR")
            .context("SLUICE_TEST_S3 is set without SLUICE_TEST_S3_DIR")?;
        return Ok(Server {
            endpoint,
            root: Path::new(&dir).join("root"),
        });
    }
    static OWN: OnceLock<Result<OwnServer, String>> = OnceLock::new();
    let own = OwnServer::get(&OWN, "s3.sh", "http://")
        .map_err(|e| anyhow!("starting the test S3 server: {e}"))?;
    Ok(Server {
        endpoint: own.url.clone(),
        root: own.dir.join("root"),
    })
}

/// The key prefix of the host with its data in `data_dir`: the directory's
/// name, so that every host has a bucket of its own in effect, and one
/// restarted on the directory finds its blobs again.
pub fn prefix(data_dir: &Path) -> String {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.trim_start_matches('.').to_owned()
}

/// Writes an AWS credentials file with the test keys into `dir` and
/// returns its path.
pub fn credentials_file(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join("s3-credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )?;
    Ok(file)
}

/// The bucket settings of the host with its data in `data_dir` (its
/// credentials file written there).
pub fn config(data_dir: &Path) -> Result<BlobsConfig> {
    Ok(BlobsConfig {
        store: BlobStoreKind::S3,
        endpoint: Some(server()?.endpoint),
        bucket: Some(BUCKET.to_owned()),
        region: Some("us-east-1".to_owned()),
        prefix: prefix(data_dir),
        credentials_file: Some(credentials_file(data_dir)?),
        ..BlobsConfig::default()
    })
}

/// [`config`] as the `[blobs]` table of a configuration file.
pub fn config_toml(data_dir: &Path) -> Result<String> {
    table(&prefix(data_dir), data_dir)
}

/// A `[blobs]` table for keys under `prefix` of the test bucket, with its
/// credentials file written into `dir`. More keys of the table may follow.
pub fn table(prefix: &str, dir: &Path) -> Result<String> {
    Ok(format!(
        "[blobs]\nstore = \"s3\"\nendpoint = {:?}\nbucket = {BUCKET:?}\nregion = \"us-east-1\"\n\
         prefix = {prefix:?}\ncredentials_file = {:?}\n",
        server()?.endpoint,
        credentials_file(dir)?.display().to_string(),
    ))
}

/// The directory on the server's disk holding the keys under `prefix`.
pub fn prefix_dir(prefix: &str) -> Result<PathBuf> {
    Ok(server()?.root.join(BUCKET).join(prefix))
}

/// The directory on the server's disk holding `tenant`'s blobs for the host
/// with its data in `data_dir` (objects are files named by their key).
pub fn tenant_dir(data_dir: &Path, tenant: &str) -> Result<PathBuf> {
    Ok(prefix_dir(&prefix(data_dir))?.join(tenant))
}

/// Multipart uploads the server holds parts of, begun and not finished.
pub fn unfinished_uploads() -> Result<usize> {
    let root = server()?.root;
    let mut count = 0;
    for entry in std::fs::read_dir(&root)? {
        let name = entry?.file_name();
        if name.to_string_lossy().starts_with(".upload-") {
            count += 1;
        }
    }
    Ok(count)
}
