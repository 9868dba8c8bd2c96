//! Blobs: bodies streamed to disk and back without being buffered, staged
//! and committed like documents, kept under file names the host makes, and
//! refused before the function runs when of the wrong type, too large or
//! over the tenant's quota.

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
use sluice_tests::postgres::skip_on_postgres;
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

/// `<data>/blobs/<tenant>`.
fn blob_dir(data: &Path, tenant: &str) -> PathBuf {
    data.join("blobs").join(tenant)
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

/// Waits until the tenant has no staged file left: the host may delete a
/// failed invocation's files just after it answers.
async fn no_staged_files(data: &Path, tenant: &str) -> Result<()> {
    let tmp = blob_dir(data, tenant).join("tmp");
    eventually(&format!("{} to be empty", tmp.display()), || {
        let tmp = tmp.clone();
        async move { Ok(files_under(&tmp)?.is_empty().then_some(())) }
    })
    .await
}

/// Asserts `reply` is a problem whose type ends with `kind`.
fn assert_problem_kind(reply: &Reply, status: u16, kind: &str) {
    reply.assert_problem(status);
    let problem = reply.body["type"].as_str().unwrap_or_default();
    assert!(problem.ends_with(kind), "{kind}: {}", reply.body);
}

/// A 50 MiB file goes up through the files example and comes back byte for
/// byte (same SHA-256, also as the ETag), both ways as a stream, while a real
/// `sluice serve` grows by less than the file: bodies are never held whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_file_streams_up_and_down_without_being_buffered() -> Result<()> {
    let data = TempDir::new()?;
    let host = Process::start(data.path(), &[root().join("guest-examples")])?;
    let client = reqwest::Client::builder().timeout(HANG_GUARD).build()?;
    let alice = token("alice", "demo", &[]);
    let file = |name: &str| format!("{}/demo/files/{name}", host.base);

    // Warm up the route, the instance pool and both directions, so that the
    // baseline includes what they keep.
    for _ in 0..3 {
        let put = client
            .put(file("warm.png"))
            .bearer_auth(&alice)
            .header("content-type", "image/png")
            .body(noise(1, 1 << 20));
        let put = send(put).await?;
        assert!(put.status.is_success(), "warm-up: {}", put.body);
        let got = send(client.get(file("warm.png")).bearer_auth(&alice)).await?;
        assert_eq!(got.status, 200);
    }
    let pid = host.pid();
    let baseline = host.resident_bytes()?;
    // The kernel's own peak where it lets us reset it; sampling otherwise.
    let exact_peak = sluice_tests::reset_peak_resident(pid).is_ok();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(now) = sluice_tests::resident_bytes(pid) {
                    peak = peak.max(now);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };

    let mut hasher = Sha256::new();
    Noise::new(7, BIG, CHUNK).for_each(|chunk| hasher.update(&chunk));
    let expected = hex(&hasher.finalize());
    let chunks = futures_util::stream::iter(Noise::new(7, BIG, CHUNK).map(Ok::<_, std::io::Error>));
    let put = client
        .put(file("big.png"))
        .bearer_auth(&alice)
        .header("content-type", "image/png")
        .body(reqwest::Body::wrap_stream(chunks));
    let put = send(put).await?;
    assert_eq!(put.status, 201, "body: {}", put.body);
    assert_eq!(put.body["size"], BIG);
    assert_eq!(put.body["etag"], expected.as_str());

    let response = tokio::time::timeout(
        HANG_GUARD,
        client.get(file("big.png")).bearer_auth(&alice).send(),
    )
    .await
    .context("download hung")??;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "content-length"),
        BIG.to_string()
    );
    assert_eq!(
        header(response.headers(), "etag"),
        format!("\"{expected}\"")
    );
    let mut hasher = Sha256::new();
    let mut received = 0;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        received += chunk.len();
        hasher.update(&chunk);
    }
    stop.store(true, Ordering::Relaxed);
    let sampled = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the memory sampler panicked"))?;
    assert_eq!(received, BIG);
    assert_eq!(
        hex(&hasher.finalize()),
        expected,
        "the download differs from the upload"
    );

    ensure!(sampled > 0, "could not read the host's resident memory");
    let peak = if exact_peak {
        sampled.max(sluice_tests::peak_resident_bytes(pid)?)
    } else {
        sampled
    };
    println!(
        "resident memory: {} MiB before, {} MiB at the peak (exact peak: {exact_peak})",
        baseline >> 20,
        peak >> 20
    );
    assert!(
        peak < baseline + STREAMING_GROWTH,
        "streaming {} MiB grew the host from {} MiB to {} MiB",
        BIG >> 20,
        baseline >> 20,
        peak >> 20
    );
    Ok(())
}

/// A blob served with `Response::blob`: the whole of it with its length,
/// ETag and type; byte ranges as 206 (first bytes, an open end, a suffix, an
/// end past the size); 416 past the end; 304 for a matching ETag (strong,
/// weak, in a list, `*`); `If-Range`; the whole blob for ranges it does not
/// serve; a 404 problem for a missing blob; names that need encoding in the
/// header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_answer_ranges_and_conditional_requests() -> Result<()> {
    let host = TestHost::start().await?;
    let data = noise(11, 1000);
    let etag = sha256_hex(&data);
    let odd = "dir/naïve file 100% #1+?.txt";
    let stored = run(
        &host,
        json!([
            put_op("r.bin", "image/webp", &data),
            put_op(odd, "text/plain", b"odd")
        ]),
    )
    .await?;
    assert_eq!(stored[0]["etag"], etag.as_str(), "{}", stored[0]);

    let full = download(&host, "r.bin", &[]).await?;
    assert_eq!(full.status, 200);
    assert_eq!(full.raw, data);
    assert_eq!(full.header("content-length"), "1000");
    assert_eq!(full.header("content-type"), "image/webp");
    assert_eq!(full.header("etag"), format!("\"{etag}\""));
    assert_eq!(full.header("accept-ranges"), "bytes");
    assert!(
        full.headers.get("x-sluice-blob").is_none(),
        "the host must strip the header the function set"
    );

    for (range, content_range, bytes) in [
        ("bytes=0-99", "bytes 0-99/1000", &data[..100]),
        ("bytes=100-", "bytes 100-999/1000", &data[100..]),
        ("bytes=-10", "bytes 990-999/1000", &data[990..]),
        ("bytes=900-5000", "bytes 900-999/1000", &data[900..]),
    ] {
        let part = download(&host, "r.bin", &[("range", range)]).await?;
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(part.header("content-range"), content_range, "{range}");
        assert_eq!(part.header("content-length"), bytes.len().to_string());
        assert_eq!(part.raw, bytes, "{range}");
    }
    let past = download(&host, "r.bin", &[("range", "bytes=1000-")]).await?;
    assert_eq!(past.status, 416, "body: {}", past.body);
    assert_eq!(past.header("content-range"), "bytes */1000");

    let quoted = format!("\"{etag}\"");
    let unchanged = download(&host, "r.bin", &[("if-none-match", quoted.as_str())]).await?;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.raw.is_empty());
    let weak = format!("W/\"{etag}\"");
    let listed = format!("\"0000\", \"{etag}\"");
    for matching in [weak.as_str(), listed.as_str(), "*"] {
        let reply = download(&host, "r.bin", &[("if-none-match", matching)]).await?;
        assert_eq!(reply.status, 304, "if-none-match: {matching}");
    }
    let changed = download(&host, "r.bin", &[("if-none-match", "\"0000\"")]).await?;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.raw, data);

    // A range only while the etag still matches; the whole blob for what
    // a single range cannot say.
    let current = download(
        &host,
        "r.bin",
        &[("range", "bytes=0-9"), ("if-range", quoted.as_str())],
    )
    .await?;
    assert_eq!(current.status, 206);
    assert_eq!(current.raw, &data[..10]);
    for (range, if_range) in [
        ("bytes=0-9", Some("\"0000\"")),
        ("bytes=0-1,5-6", None),
        ("items=0-9", None),
        ("bytes=oops", None),
    ] {
        let mut headers = vec![("range", range)];
        headers.extend(if_range.map(|tag| ("if-range", tag)));
        let whole = download(&host, "r.bin", &headers).await?;
        assert_eq!(whole.status, 200, "{range} {if_range:?}");
        assert_eq!(whole.raw, data, "{range} {if_range:?}");
    }
    let nothing = download(&host, "r.bin", &[("range", "bytes=-0")]).await?;
    assert_eq!(nothing.status, 416);

    let missing = download(&host, "no-such-blob", &[]).await?;
    assert_problem_kind(&missing, 404, "blob-not-found");

    // The name goes through the header percent-encoded and back exactly.
    let odd_back = download(&host, odd, &[]).await?;
    assert_eq!(odd_back.status, 200, "body: {}", odd_back.body);
    assert_eq!(odd_back.raw, b"odd");
    host.stop().await?;
    Ok(())
}

/// The files example: users upload, list, download and delete their own
/// files; another user's are a 404 everywhere and a name of their own is a
/// separate file; only an admin reads another user's file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_belong_to_their_owner_and_admins_read_any() -> Result<()> {
    let host = TestHost::start().await?;
    let alice = token("alice", "demo", &["member"]);
    let bob = token("bob", "demo", &["member"]);
    let root_user = token("root", "demo", &["admin"]);
    let put = |who: &str, name: &str, content_type: &str, body: Vec<u8>| {
        host.client
            .put(host.url(&format!("/demo/files/{name}")))
            .bearer_auth(who)
            .header("content-type", content_type)
            .body(body)
    };
    let get = |who: &str, path: &str| host.client.get(host.url(path)).bearer_auth(who);

    let first = noise(21, 5000);
    let created = host.send(put(&alice, "a.png", "image/png", first)).await?;
    assert_eq!(created.status, 201, "body: {}", created.body);
    let photo = noise(22, 7000);
    let replaced = host
        .send(put(&alice, "a.png", "image/png", photo.clone()))
        .await?;
    assert_eq!(replaced.status, 200, "a second upload replaces the file");
    assert_eq!(
        replaced.body,
        json!({
            "name": "a.png",
            "size": 7000,
            "content_type": "image/png",
            "etag": sha256_hex(&photo),
        })
    );
    for (name, content_type) in [("b.pdf", "application/pdf"), ("c.jpg", "image/jpeg")] {
        let reply = host
            .send(put(&alice, name, content_type, noise(23, 100)))
            .await?;
        assert_eq!(reply.status, 201, "{name}: {}", reply.body);
    }
    // The route's `accept` turns away other types before the function runs.
    let text = host
        .send(put(&alice, "notes.txt", "text/plain", b"hi".to_vec()))
        .await?;
    assert_problem_kind(&text, 415, "unsupported-media-type");
    let too_long = "x".repeat(201);
    for bad in [".hidden", too_long.as_str()] {
        let reply = host
            .send(put(&alice, bad, "image/png", b"x".to_vec()))
            .await?;
        reply.assert_problem(400);
    }

    // Listing pages through alice's files only.
    let mut listed = Vec::new();
    let mut path = "/demo/files?limit=2".to_owned();
    for _ in 0..5 {
        let page = host.send(get(&alice, &path)).await?;
        assert_eq!(page.status, 200, "body: {}", page.body);
        let files = page.body["files"].as_array().cloned().unwrap_or_default();
        assert!(files.len() <= 2, "{}", page.body);
        listed.extend(files);
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/demo/files?limit=2&cursor={}", query_escape(cursor)),
            None => break,
        }
    }
    let names: Vec<&str> = listed.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["a.png", "b.pdf", "c.jpg"]);
    assert_eq!(listed[0]["size"], 7000);
    assert_eq!(listed[0]["etag"], sha256_hex(&photo));
    assert!(listed[0]["created"].as_u64().is_some_and(|c| c > 0));

    let mine = host.send(get(&alice, "/demo/files/a.png")).await?;
    assert_eq!(mine.status, 200, "body: {}", mine.body);
    assert_eq!(mine.raw, photo);
    assert_eq!(mine.header("content-type"), "image/png");
    assert_eq!(
        mine.header("content-disposition"),
        "inline; filename=\"a.png\""
    );

    // Bob sees none of it, and his a.png is his own.
    let bobs = host.send(get(&bob, "/demo/files")).await?;
    assert_eq!(bobs.body["files"], json!([]));
    host.send(get(&bob, "/demo/files/a.png"))
        .await?
        .assert_problem(404);
    let bob_delete = host
        .client
        .delete(host.url("/demo/files/a.png"))
        .bearer_auth(&bob);
    host.send(bob_delete).await?.assert_problem(404);
    let bob_photo = noise(24, 300);
    let own = host
        .send(put(&bob, "a.png", "image/png", bob_photo.clone()))
        .await?;
    assert_eq!(own.status, 201, "bob's a.png is a new file: {}", own.body);
    assert_eq!(
        host.send(get(&alice, "/demo/files/a.png")).await?.raw,
        photo
    );

    // Only an admin reads another user's file.
    host.send(get(&bob, "/demo/users/alice/files/a.png"))
        .await?
        .assert_problem(403);
    let by_admin = host
        .send(get(&root_user, "/demo/users/alice/files/a.png"))
        .await?;
    assert_eq!(by_admin.status, 200, "body: {}", by_admin.body);
    assert_eq!(by_admin.raw, photo);
    host.send(get(&root_user, "/demo/users/alice/files/none.png"))
        .await?
        .assert_problem(404);

    let deleted = host
        .send(
            host.client
                .delete(host.url("/demo/files/a.png"))
                .bearer_auth(&alice),
        )
        .await?;
    assert_eq!(deleted.status, 204);
    host.send(get(&alice, "/demo/files/a.png"))
        .await?
        .assert_problem(404);
    assert_eq!(
        host.send(get(&bob, "/demo/files/a.png")).await?.raw,
        bob_photo
    );
    let rows = host
        .count(
            "SELECT count(*) FROM blobs WHERE tenant = 'demo' AND name IN ('alice/a.png', 'bob/a.png')",
            &[],
        )
        .await?;
    assert_eq!(rows, 1);
    host.stop().await?;
    Ok(())
}

/// A function that stages a put, or keeps an upload, and then fails leaves
/// no row, no committed file and, once it is cleaned up, no staged file;
/// committed blobs it replaced or deleted meanwhile are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_invocation_leaves_no_blob_behind() -> Result<()> {
    let host = TestHost::start().await?;
    run(&host, json!([put_op("kept", "text/plain", b"before")])).await?;
    let usage = stored_bytes(&host, "acme").await?;

    let ops = json!([
        put_op("doomed", "text/plain", b"never"),
        put_op("kept", "text/plain", b"overwritten?"),
        { "op": "delete", "name": "kept" },
    ]);
    let failed = host
        .post(
            "/acme/blobs/run",
            Some(&acme()),
            &json!({ "ops": ops, "fail": true }),
        )
        .await?;
    failed.assert_problem(500);
    let kept_and_failed = upload(
        &host,
        "/acme/blobs/upload?name=doomed-upload&fail=yes",
        "application/octet-stream",
        noise(31, 100_000),
    )
    .await?;
    kept_and_failed.assert_problem(500);

    assert_eq!(blob_rows(&host, "acme").await?, 1);
    no_staged_files(host.data(), "acme").await?;
    let objects = files_under(&blob_dir(host.data(), "acme").join("objects"))?;
    assert_eq!(objects.len(), 1, "only `kept` is committed: {objects:?}");
    let seen = run(
        &host,
        json!([
            { "op": "head", "name": "doomed" },
            { "op": "head", "name": "doomed-upload" },
            { "op": "get", "name": "kept" },
        ]),
    )
    .await?;
    assert_eq!(seen[0], Value::Null);
    assert_eq!(seen[1], Value::Null);
    assert_eq!(seen[2]["text"], "before");
    assert_eq!(stored_bytes(&host, "acme").await?, usage);
    host.stop().await?;
    Ok(())
}

/// Through the guest API: a put is seen by get, get-range, head and list in
/// the same invocation (created 0), a delete hides it there too; once
/// committed, blobs carry a creation time; listings page with a cursor and
/// merge staged puts and deletes with what is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_calls_see_their_own_staged_puts_and_deletes() -> Result<()> {
    let host = TestHost::start().await?;
    let started = now_ms();
    let staged = run(
        &host,
        json!([
            put_op("s/a", "text/plain", b"alpha"),
            { "op": "head", "name": "s/a" },
            { "op": "get", "name": "s/a" },
            { "op": "get_range", "name": "s/a", "offset": 1, "length": 3 },
            { "op": "get_range", "name": "s/a", "offset": 3, "length": 100 },
            { "op": "list", "prefix": "s/" },
            put_op("s/b", "application/json", b"{\"b\":1}"),
            { "op": "delete", "name": "s/a" },
            { "op": "get", "name": "s/a" },
            { "op": "head", "name": "s/a" },
            { "op": "list_all", "prefix": "s/" },
            { "op": "delete", "name": "s/never" },
        ]),
    )
    .await?;
    let alpha = json!({
        "name": "s/a",
        "size": 5,
        "content_type": "text/plain",
        "etag": sha256_hex(b"alpha"),
        "created": 0,
    });
    assert_eq!(staged[0], alpha, "put");
    assert_eq!(staged[1], alpha, "head of a staged put");
    assert_eq!(staged[2]["text"], "alpha");
    assert_eq!(staged[3]["text"], "lph");
    assert_eq!(staged[4]["text"], "ha", "a range past the end is cut short");
    assert_eq!(names_in(&staged[5]), ["s/a"]);
    assert_eq!(staged[7], true);
    assert_eq!(staged[8], Value::Null, "get after a staged delete");
    assert_eq!(staged[9], Value::Null, "head after a staged delete");
    assert_eq!(names_in(&staged[10]), ["s/b"]);
    assert_eq!(staged[11], false);

    let committed = run(
        &host,
        json!([
            { "op": "head", "name": "s/a" },
            { "op": "head", "name": "s/b" },
            { "op": "get", "name": "s/b" },
        ]),
    )
    .await?;
    assert_eq!(committed[0], Value::Null);
    assert_eq!(committed[1]["size"], 7);
    assert_eq!(committed[1]["content_type"], "application/json");
    let created = committed[1]["created"].as_u64().unwrap_or_default();
    assert!(
        (started..=now_ms()).contains(&created),
        "created {created}, test started at {started}"
    );
    assert_eq!(committed[2]["text"], "{\"b\":1}");

    // Committed p/0..p/4, listed two at a time.
    let puts: Vec<Value> = (0..5)
        .map(|i| put_op(&format!("p/{i}"), "text/plain", format!("{i}").as_bytes()))
        .collect();
    run(&host, Value::Array(puts)).await?;
    let mut pages = Vec::new();
    let mut cursor = Value::Null;
    for _ in 0..10 {
        let listed = run(
            &host,
            json!([{ "op": "list", "prefix": "p/", "limit": 2, "cursor": cursor }]),
        )
        .await?;
        let page = names_in(&listed[0]);
        assert!(page.len() <= 2, "{}", listed[0]);
        pages.extend(page);
        cursor = listed[0]["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(pages, ["p/0", "p/1", "p/2", "p/3", "p/4"]);

    // Staged puts and deletes merge into a listing of committed blobs, and
    // go away with a failed invocation.
    let ops = json!([
        put_op("p/2a", "text/plain", b"new"),
        { "op": "delete", "name": "p/1" },
        { "op": "list_all", "prefix": "p/" },
        { "op": "list", "prefix": "p/", "limit": 2 },
    ]);
    let merged = host
        .post(
            "/acme/blobs/run",
            Some(&acme()),
            &json!({ "ops": ops.clone() }),
        )
        .await?;
    assert_eq!(merged.status, 200, "body: {}", merged.body);
    assert_eq!(
        names_in(&merged.body[2]),
        ["p/0", "p/2", "p/2a", "p/3", "p/4"]
    );
    assert_eq!(names_in(&merged.body[3]), ["p/0", "p/2"]);
    assert!(merged.body[3]["next_cursor"].is_string());
    let after = run(&host, json!([{ "op": "list_all", "prefix": "p/" }])).await?;
    assert_eq!(names_in(&after[0]), ["p/0", "p/2", "p/2a", "p/3", "p/4"]);
    host.stop().await?;
    Ok(())
}

/// Names like `../escape` and `/etc/passwd` are only keys: they round-trip
/// through put, get, head, list and a download, and the only files the host
/// creates are in `blobs/acme/objects`, under names of its own. Names the
/// contract excludes (over 1024 bytes, control characters, empty) are
/// `invalid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_names_are_opaque_and_never_reach_a_path() -> Result<()> {
    // The data directory inside one of our own, so that anything written
    // beside it (`<data>/../escape`) is seen too.
    let outer = TempDir::new()?;
    let data = TempDir::new_in(outer.path())?;
    let data_path = data.path().to_owned();
    let host = TestHost::start_with(data, |_| {}).await?;
    let before = entries_under(outer.path())?;
    let passwd = std::fs::read("/etc/passwd").ok();

    let longest = "n".repeat(1024);
    let names = [
        "../escape",
        "/etc/passwd",
        "a/../../b",
        "..",
        ".",
        "./.",
        "../../../../../../../../tmp/sluice-blob-escape",
        "objects/../tmp/x",
        "C:\\..\\windows",
        "~",
        longest.as_str(),
    ];
    let puts: Vec<Value> = names
        .iter()
        .map(|name| put_op(name, "text/plain", format!("content of {name}").as_bytes()))
        .collect();
    let stored = run(&host, Value::Array(puts)).await?;
    for (name, result) in names.iter().zip(&stored) {
        assert_eq!(result["name"], *name, "put {name:?}: {result}");
    }
    let mut reads: Vec<Value> = names
        .iter()
        .flat_map(|name| {
            [
                json!({ "op": "get", "name": name }),
                json!({ "op": "head", "name": name }),
            ]
        })
        .collect();
    reads.push(json!({ "op": "list_all" }));
    let read = run(&host, Value::Array(reads)).await?;
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            read[2 * i]["text"],
            format!("content of {name}"),
            "{name:?}"
        );
        assert_eq!(read[2 * i + 1]["name"], *name, "{name:?}");
    }
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort_unstable();
    assert_eq!(names_in(&read[2 * names.len()]), sorted);
    let served = download(&host, "../escape", &[]).await?;
    assert_eq!(served.status, 200, "body: {}", served.body);
    assert_eq!(served.raw, b"content of ../escape");

    let refused = run(
        &host,
        json!([
            { "op": "put", "name": "x".repeat(1025), "data": "no" },
            { "op": "put", "name": "nul\u{0}byte", "data": "no" },
            { "op": "put", "name": "line\nbreak", "data": "no" },
            { "op": "put", "name": "", "data": "no" },
            { "op": "head", "name": "nul\u{0}byte" },
        ]),
    )
    .await?;
    for (i, result) in refused.iter().enumerate() {
        assert!(is_error(result, "invalid"), "refused op {i}: {result}");
    }
    assert_eq!(blob_rows(&host, "acme").await?, names.len() as i64);
    let data = host.stop().await?;

    let objects = data_path.join("blobs/acme/objects");
    let tmp = data_path.join("blobs/acme/tmp");
    let expected_dirs = [
        data_path.join("blobs"),
        data_path.join("blobs/acme"),
        objects.clone(),
        tmp.clone(),
    ];
    let mut object_files = Vec::new();
    for path in entries_under(outer.path())? {
        if before.contains(&path) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path)?;
        let in_root_named = |prefix: &str| {
            path.parent() == Some(data_path.as_path())
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
        };
        if meta.is_file() && path.parent() == Some(objects.as_path()) {
            object_files.push(path.clone());
        } else if (meta.is_dir() && expected_dirs.contains(&path))
            || in_root_named("sluice.db")
            || in_root_named("test-database-url")
        {
            continue;
        } else {
            bail!(
                "storing blobs created {} (only files in {} were expected)",
                path.display(),
                objects.display()
            );
        }
    }
    assert_eq!(object_files.len(), names.len(), "{object_files:?}");
    for file in &object_files {
        let id = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            id.len() >= 16 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
            "{id:?} is not a name the host made"
        );
    }
    assert!(files_under(&tmp)?.is_empty(), "staged files remain");
    assert_eq!(std::fs::read("/etc/passwd").ok(), passwd);
    drop(data);
    Ok(())
}

/// Symlinks planted in the blob tree are not followed: a committed blob's
/// file swapped for a link to a secret serves a 5xx problem, not the secret,
/// to a client or the guest; a staging directory swapped for a link to
/// another directory makes an upload fail with a 5xx and writes nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_in_the_blob_tree_are_not_followed() -> Result<()> {
    let outside = TempDir::new()?;
    let secret = outside.path().join("secret.txt");
    let secret_text = format!("top secret {}", sha256_hex(&noise(41, 16)));
    std::fs::write(&secret, &secret_text)?;
    let host = TestHost::start().await?;
    run(&host, json!([put_op("victim", "text/plain", b"harmless")])).await?;

    let victim = object_file(host.data(), "acme", "victim").await?;
    std::fs::remove_file(&victim)?;
    std::os::unix::fs::symlink(&secret, &victim)?;
    let served = download(&host, "victim", &[]).await?;
    assert!(
        !String::from_utf8_lossy(&served.raw).contains(&secret_text),
        "the download followed the link"
    );
    assert!(
        served.status.is_server_error(),
        "{}: {}",
        served.status,
        served.body
    );
    served.assert_problem(served.status.as_u16());
    let read = run(
        &host,
        json!([
            { "op": "get", "name": "victim" },
            { "op": "get_range", "name": "victim", "offset": 0, "length": 100 },
        ]),
    )
    .await?;
    for result in &read {
        assert!(
            !result.to_string().contains(&secret_text) && bytes_of(result).is_none(),
            "the guest read through the link: {result}"
        );
        assert!(result["error"].is_string(), "{result}");
    }

    let elsewhere = TempDir::new()?;
    let tmp = blob_dir(host.data(), "acme").join("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::os::unix::fs::symlink(elsewhere.path(), &tmp)?;
    let refused = upload(
        &host,
        "/acme/blobs/upload?name=through-the-link",
        "application/octet-stream",
        noise(42, 10_000),
    )
    .await?;
    assert!(
        refused.status.is_server_error(),
        "{}: {}",
        refused.status,
        refused.body
    );
    refused.assert_problem(refused.status.as_u16());
    // A put staged by the guest must not land there either.
    let _ = host
        .post(
            "/acme/blobs/run",
            Some(&acme()),
            &json!({ "ops": [put_op("through-the-link", "text/plain", b"x")] }),
        )
        .await?;
    assert_eq!(
        entries_under(elsewhere.path())?,
        Vec::<PathBuf>::new(),
        "the host wrote through the link"
    );
    host.stop().await?;
    Ok(())
}

/// Why the start-up repair tests are SQLite's only.
const BLOB_REPAIR_IS_SINGLE_NODE: &str = "nodes on one PostgreSQL database may share the blob \
     directory, so start-up repair keeps young orphan files and never drops rows";

/// A host that dies after moving an upload into `objects/` but before the
/// database commit (the debug build's `SLUICE_FAULT=blob-commit`) leaves a
/// file with no row; the next start removes it, and uploads work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_rename_and_commit_leaves_no_blob() -> Result<()> {
    if skip_on_postgres(BLOB_REPAIR_IS_SINGLE_NODE) {
        return Ok(());
    }
    let data = TempDir::new()?;
    let examples = [root().join("guest-examples")];
    let mut crashing = Process::start_with_env(
        data.path(),
        &examples,
        "",
        &[("SLUICE_FAULT", "blob-commit")],
    )?;
    let client = reqwest::Client::builder().timeout(HANG_GUARD).build()?;
    let alice = token("alice", "demo", &[]);
    let body = noise(51, 300_000);
    let attempt = client
        .put(format!("{}/demo/files/crash.png", crashing.base))
        .bearer_auth(&alice)
        .header("content-type", "image/png")
        .body(body.clone())
        .send()
        .await;
    assert!(
        attempt.is_err(),
        "the host answered {:?}",
        attempt.map(|r| r.status())
    );
    let status = crashing.exited().await?;
    assert!(!status.success(), "the host exited with {status}");
    let objects = blob_dir(data.path(), "demo").join("objects");
    assert_eq!(
        files_under(&objects)?.len(),
        1,
        "the fault point is after the rename"
    );
    drop(crashing);

    let host = TestHost::start_with(data, |_| {}).await?;
    assert_eq!(blob_rows(&host, "demo").await?, 0);
    eventually("the orphaned file to be removed", || {
        let objects = objects.clone();
        async move { Ok(files_under(&objects)?.is_empty().then_some(())) }
    })
    .await?;
    no_staged_files(host.data(), "demo").await?;
    let listed = host.get("/demo/files", Some(&alice)).await?;
    assert_eq!(listed.body["files"], json!([]), "body: {}", listed.body);

    let put = host
        .client
        .put(host.url("/demo/files/crash.png"))
        .bearer_auth(&alice)
        .header("content-type", "image/png")
        .body(body.clone());
    let retried = host.send(put).await?;
    assert_eq!(retried.status, 201, "body: {}", retried.body);
    let back = host.get("/demo/files/crash.png", Some(&alice)).await?;
    assert_eq!(back.raw, body);
    host.stop().await?;
    Ok(())
}

/// A row whose file is gone (deleted while the host was down) is dropped at
/// the next start: the blob is a 404, and the tenant's stored bytes fall
/// back to what its remaining blobs account for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_file_is_gone_is_dropped_at_start() -> Result<()> {
    if skip_on_postgres(BLOB_REPAIR_IS_SINGLE_NODE) {
        return Ok(());
    }
    let host = TestHost::start().await?;
    let empty = stored_bytes(&host, "acme").await?;
    let keep = noise(61, 3000);
    run(
        &host,
        json!([put_op("keep.bin", "application/octet-stream", &keep)]),
    )
    .await?;
    let with_keep = stored_bytes(&host, "acme").await?;
    run(
        &host,
        json!([put_op(
            "gone.bin",
            "application/octet-stream",
            &noise(62, 5000)
        )]),
    )
    .await?;
    let with_both = stored_bytes(&host, "acme").await?;
    // A blob counts its size.
    assert_eq!(with_keep - empty, 3000);
    assert_eq!(with_both - with_keep, 5000);

    let gone = object_file(host.data(), "acme", "gone.bin").await?;
    let data = host.stop().await?;
    std::fs::remove_file(&gone)?;
    let host = TestHost::start_with(data, |_| {}).await?;

    let row = "SELECT count(*) FROM blobs WHERE tenant = 'acme' AND name = 'gone.bin'";
    eventually("the row of the missing file to go", || async {
        Ok((host.count(row, &[]).await? == 0).then_some(()))
    })
    .await?;
    let missing = download(&host, "gone.bin", &[]).await?;
    assert_problem_kind(&missing, 404, "blob-not-found");
    let seen = run(
        &host,
        json!([{ "op": "head", "name": "gone.bin" }, { "op": "get", "name": "keep.bin" }]),
    )
    .await?;
    assert_eq!(seen[0], Value::Null);
    assert_eq!(bytes_of(&seen[1]), Some(keep));
    assert_eq!(stored_bytes(&host, "acme").await?, with_keep);

    run(&host, json!([{ "op": "delete", "name": "keep.bin" }])).await?;
    assert_eq!(stored_bytes(&host, "acme").await?, empty);
    host.stop().await?;
    Ok(())
}

/// A raw route hands the function an empty body and the upload's metadata;
/// the upload is kept under one name only (a second name is `invalid`),
/// and one the function does not keep leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_kept_once_and_never_reaches_the_function_as_a_body() -> Result<()> {
    let host = TestHost::start().await?;
    let body = noise(71, 10_240);
    let kept = upload(
        &host,
        "/acme/blobs/upload?name=up-1&again=up-2",
        "application/x-thing",
        body.clone(),
    )
    .await?;
    assert_eq!(kept.status, 200, "body: {}", kept.body);
    let etag = sha256_hex(&body);
    assert_eq!(
        kept.body["upload"],
        json!({ "content_type": "application/x-thing", "size": 10_240, "etag": etag })
    );
    assert_eq!(kept.body["kept"]["name"], "up-1");
    assert_eq!(kept.body["kept"]["etag"], etag.as_str());
    assert_eq!(kept.body["kept"]["created"], 0);
    assert!(is_error(&kept.body["again"], "invalid"), "{}", kept.body);
    assert_eq!(kept.body["offered_after_keep"], false);
    assert_eq!(kept.body["body_len"], 0);
    let served = download(&host, "up-1", &[]).await?;
    assert_eq!(served.raw, body);
    assert_eq!(served.header("content-type"), "application/x-thing");
    let second = run(&host, json!([{ "op": "head", "name": "up-2" }])).await?;
    assert_eq!(second[0], Value::Null);

    let not_kept = upload(
        &host,
        "/acme/blobs/upload?keep=no",
        "application/octet-stream",
        noise(72, 5000),
    )
    .await?;
    assert_eq!(not_kept.status, 200, "body: {}", not_kept.body);
    assert_eq!(not_kept.body["kept"], Value::Null);
    assert_eq!(not_kept.body["upload"]["size"], 5000);
    no_staged_files(host.data(), "acme").await?;
    assert_eq!(blob_rows(&host, "acme").await?, 1);
    let objects = files_under(&blob_dir(host.data(), "acme").join("objects"))?;
    assert_eq!(objects.len(), 1, "{objects:?}");
    host.stop().await?;
    Ok(())
}

/// Reads one HTTP/1.1 response from `stream`: status, lower-case headers
/// and the body (by `content-length`, else up to the end of the stream).
async fn read_response(
    stream: &mut tokio::net::TcpStream,
) -> Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        answer.extend_from_slice(&buf[..n]);
        let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = head_end {
            let head = String::from_utf8_lossy(&answer[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status: u16 = lines
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .context("no status line")?
                .parse()?;
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let length = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse::<usize>().ok());
            let body = &answer[end + 4..];
            match length {
                Some(length) if body.len() >= length => {
                    return Ok((status, headers, body[..length].to_vec()));
                }
                None if n == 0 => return Ok((status, headers, body.to_vec())),
                _ => {}
            }
        }
        if n == 0 {
            bail!(
                "the connection closed mid-response: {:?}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
}

/// Raw uploads are refused before the function runs, with problems: a
/// media type not in `accept` (wildcards and parameters understood) is 415;
/// a body over `max_body_bytes` is 413, declared or streamed, and a
/// declared one is refused without waiting for the body; an upload past the
/// tenant's `max_stored_bytes` (blob bytes count) is 507, and so is a
/// guest's put. None of them leaves a file or a row behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_uploads_are_refused_by_type_size_and_quota() -> Result<()> {
    let host = TestHost::start().await?;
    for content_type in ["text/plain", "text/csv", "text/plain; charset=utf-8"] {
        let reply = upload(
            &host,
            "/acme/blobs/small-upload?keep=no",
            content_type,
            b"fits".to_vec(),
        )
        .await?;
        assert_eq!(
            reply.status, 200,
            "{content_type} is text/*: {}",
            reply.body
        );
    }
    let json_body = upload(
        &host,
        "/acme/blobs/small-upload?name=j",
        "application/json",
        b"{}".to_vec(),
    )
    .await?;
    assert_problem_kind(&json_body, 415, "unsupported-media-type");

    let declared = upload(
        &host,
        "/acme/blobs/small-upload?name=big",
        "text/plain",
        vec![b'x'; 2048],
    )
    .await?;
    assert_problem_kind(&declared, 413, "body-too-large");
    let chunks = futures_util::stream::iter(Noise::new(81, 4096, 512).map(Ok::<_, std::io::Error>));
    let streamed = host
        .client
        .post(host.url("/acme/blobs/small-upload?name=big"))
        .bearer_auth(acme())
        .header("content-type", "text/plain")
        .body(reqwest::Body::wrap_stream(chunks));
    let streamed = host.send(streamed).await?;
    assert_problem_kind(&streamed, 413, "body-too-large");

    // 100 MB declared to the files route (64 MiB), and no body sent: the
    // answer must come without the host waiting for it.
    let addr = host
        .base
        .strip_prefix("http://")
        .context("base is not http")?
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    let head = format!(
        "PUT /demo/files/huge.png HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: image/png\r\ncontent-length: 100000000\r\n\r\n",
        token("alice", "demo", &[])
    );
    stream.write_all(head.as_bytes()).await?;
    let (status, headers, body) = tokio::time::timeout(HANG_GUARD, read_response(&mut stream))
        .await
        .context("the host waited for a body it must refuse")??;
    assert_eq!(status, 413);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/problem+json"),
        "{headers:?}"
    );
    let problem: Value = serde_json::from_slice(&body)?;
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("body-too-large")),
        "{problem}"
    );

    // The quota counts blob bytes.
    let key = operator_key(&host)?;
    let quota = admin(
        &host,
        Method::PUT,
        "/v1/tenants/acme/quota",
        Some(&key),
        Some(json!({ "max_stored_bytes": 20_000 })),
    )
    .await?;
    assert_eq!(quota.status, 200, "body: {}", quota.body);
    let empty = stored_bytes(&host, "acme").await?;
    let first = upload(
        &host,
        "/acme/blobs/upload?name=q1",
        "application/octet-stream",
        noise(82, 12_000),
    )
    .await?;
    assert_eq!(first.status, 200, "body: {}", first.body);
    let used = stored_bytes(&host, "acme").await?;
    assert_eq!(used - empty, 12_000, "a blob counts its size");
    let over = upload(
        &host,
        "/acme/blobs/upload?name=q2",
        "application/octet-stream",
        noise(83, 12_000),
    )
    .await?;
    assert_problem_kind(&over, 507, "storage-quota-exceeded");
    let put_over = host
        .post(
            "/acme/blobs/run",
            Some(&acme()),
            &json!({ "ops": [put_op("q3", "application/octet-stream", &noise(84, 12_000))] }),
        )
        .await?;
    assert_problem_kind(&put_over, 507, "storage-quota-exceeded");

    assert_eq!(blob_rows(&host, "acme").await?, 1);
    assert_eq!(stored_bytes(&host, "acme").await?, used);
    no_staged_files(host.data(), "acme").await?;
    let objects = files_under(&blob_dir(host.data(), "acme").join("objects"))?;
    assert_eq!(objects.len(), 1, "{objects:?}");

    // Deleting frees the room again.
    run(&host, json!([{ "op": "delete", "name": "q1" }])).await?;
    assert_eq!(stored_bytes(&host, "acme").await?, empty);
    let fits = upload(
        &host,
        "/acme/blobs/upload?name=q2",
        "application/octet-stream",
        noise(83, 12_000),
    )
    .await?;
    assert_eq!(fits.status, 200, "body: {}", fits.body);
    host.stop().await?;
    Ok(())
}
