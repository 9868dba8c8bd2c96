//! Blobs: bodies streamed to disk and back without being buffered, staged
//! and committed like documents, kept under file names the host makes, and
//! refused before the function runs when of the wrong type, too large or
//! over the tenant's quota.

mod names;
mod recovery;
mod serving;
mod staging;
mod streaming;
mod tenants;
mod uploads;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_tests::postgres::sqlite_only;
use sluice_tests::s3::{Blobs, local_only};
use sluice_tests::{
    HANG_GUARD, Process, Reply, TestHost, admin, entries_under, eventually, files_under,
    operator_key, root, send, token,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The size of the large upload: more than the host may grow by while it
/// streams it, so buffering it whole cannot pass.
const BIG: usize = 50 << 20;

/// How much the serve process may grow while it streams [`BIG`] up and
/// down: room for buffers and allocator slack, well under the body itself.
const STREAMING_GROWTH: u64 = 40 << 20;

/// The chunk size of streamed test bodies.
const CHUNK: usize = 64 << 10;

/// Deterministic pseudo-random bytes (xorshift64*) in chunks, so a test can
/// make a large body, and check what comes back, without holding it.
struct Noise {
    state: u64,
    left: usize,
    chunk: usize,
}

impl Noise {
    fn new(seed: u64, len: usize, chunk: usize) -> Self {
        Self {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            left: len,
            chunk: chunk.max(1),
        }
    }
}

impl Iterator for Noise {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.left == 0 {
            return None;
        }
        let n = self.chunk.min(self.left);
        self.left -= n;
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            out.extend_from_slice(&self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        out.truncate(n);
        Some(out)
    }
}

/// `len` bytes of [`Noise`].
fn noise(seed: u64, len: usize) -> Vec<u8> {
    Noise::new(seed, len, len).flatten().collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Percent-encodes everything but unreserved characters, so a value reads
/// back the same whether the host decodes `+` as a space or not.
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A token of tenant acme, which the blobs probe serves.
fn acme() -> String {
    token("alice", "acme", &[])
}

/// A `put` op of the blobs probe, the content base64-encoded.
fn put_op(name: &str, content_type: &str, data: &[u8]) -> Value {
    json!({ "op": "put", "name": name, "content_type": content_type, "base64": STANDARD.encode(data) })
}

/// The bytes of a probe's `get` or `get_range` result; `None` for `null`.
fn bytes_of(result: &Value) -> Option<Vec<u8>> {
    STANDARD.decode(result["base64"].as_str()?).ok()
}

/// The names in a probe's `list` page or `list_all` result.
fn names_in(listed: &Value) -> Vec<String> {
    let blobs = listed.get("blobs").unwrap_or(listed);
    blobs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect()
}

/// Whether a probe's result is the error `kind` (`invalid`, `unavailable`, ...).
fn is_error(result: &Value, kind: &str) -> bool {
    result["error"]
        .as_str()
        .is_some_and(|e| e.starts_with(&format!("{kind}: ")))
}

/// Runs `ops` in the blobs probe; asserts a 200 and returns each op's result.
async fn run(host: &TestHost, ops: Value) -> Result<Vec<Value>> {
    let reply = host
        .post("/acme/blobs/run", Some(&acme()), &json!({ "ops": ops }))
        .await?;
    ensure!(
        reply.status == 200,
        "blobs/run answered {}: {}",
        reply.status,
        reply.body
    );
    reply
        .body
        .as_array()
        .cloned()
        .context("blobs/run did not answer an array")
}

/// POSTs `body` as `content_type` to the probe's upload route `path` (query included).
async fn upload(host: &TestHost, path: &str, content_type: &str, body: Vec<u8>) -> Result<Reply> {
    let req = host
        .client
        .post(host.url(path))
        .bearer_auth(acme())
        .header("content-type", content_type)
        .body(body);
    host.send(req).await
}

/// Downloads blob `name` of acme through the probe, with extra request headers.
async fn download(host: &TestHost, name: &str, headers: &[(&str, &str)]) -> Result<Reply> {
    let path = format!("/acme/blobs/download?name={}", query_escape(name));
    let mut req = host.client.get(host.url(&path)).bearer_auth(acme());
    for (key, value) in headers {
        req = req.header(*key, *value);
    }
    host.send(req).await
}

/// Where `tenant`'s blob bytes are on disk: `<data>/blobs/<tenant>`, or in
/// the bucket pass the tenant's keys on the S3 server's disk. Either way
/// committed blobs are files in its `objects/`.
fn blob_dir(data: &Path, tenant: &str) -> PathBuf {
    match sluice_tests::s3::blobs() {
        Blobs::Local => data.join("blobs").join(tenant),
        Blobs::Bucket => sluice_tests::s3::tenant_dir(data, tenant)
            .unwrap_or_else(|e| panic!("the test S3 server: {e:#}")),
    }
}

/// The file that holds committed blob `name`, from its row in `blobs`.
async fn object_file(data: &Path, tenant: &str, name: &str) -> Result<PathBuf> {
    let db = sluice_tests::db(data).await?;
    let file: Option<String> =
        sqlx::query_scalar("SELECT file FROM blobs WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&db)
            .await?;
    db.close().await;
    let file = file.with_context(|| format!("no row for blob {name:?}"))?;
    // The column holds the host's id for the file (or a path ending in it).
    let id = Path::new(&file)
        .file_name()
        .with_context(|| format!("blob {name:?} has file {file:?}"))?;
    Ok(blob_dir(data, tenant).join("objects").join(id))
}

/// The tenant's stored bytes as the committer keeps them (0 before any write).
async fn stored_bytes(host: &TestHost, tenant: &str) -> Result<i64> {
    host.count(
        "SELECT COALESCE((SELECT stored_bytes FROM tenant_usage WHERE tenant = $1), 0)",
        &[tenant],
    )
    .await
}

async fn blob_rows(host: &TestHost, tenant: &str) -> Result<i64> {
    host.count("SELECT count(*) FROM blobs WHERE tenant = $1", &[tenant])
        .await
}

/// Waits until the tenant has no staged bytes left: the host may delete a
/// failed invocation's just after it answers. In a directory they are in
/// `tmp/`; in a bucket they are objects no row names.
async fn no_staged_files(data: &Path, tenant: &str) -> Result<()> {
    let dir = blob_dir(data, tenant);
    match sluice_tests::s3::blobs() {
        Blobs::Local => {
            let tmp = dir.join("tmp");
            eventually(&format!("{} to be empty", tmp.display()), || {
                let tmp = tmp.clone();
                async move { Ok(files_under(&tmp)?.is_empty().then_some(())) }
            })
            .await
        }
        Blobs::Bucket => {
            let objects = dir.join("objects");
            eventually("every object to have a row", || {
                let objects = objects.clone();
                async move {
                    let db = sluice_tests::db(data).await?;
                    let rows: i64 =
                        sqlx::query_scalar("SELECT count(*) FROM blobs WHERE tenant = $1")
                            .bind(tenant)
                            .fetch_one(&db)
                            .await?;
                    db.close().await;
                    let files = files_under(&objects)?.len() as i64;
                    Ok((files == rows).then_some(()))
                }
            })
            .await
        }
    }
}

/// Asserts `reply` is a problem whose type ends with `kind`.
fn assert_problem_kind(reply: &Reply, status: u16, kind: &str) {
    reply.assert_problem(status);
    let problem = reply.body["type"].as_str().unwrap_or_default();
    assert!(problem.ends_with(kind), "{kind}: {}", reply.body);
}
