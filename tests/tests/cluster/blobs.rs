//! Blobs in an S3-compatible bucket (the test s3s-fs server): nodes with no
//! directory in common serve each other's blobs, replaced and deleted
//! objects go, and what a crash or an abandoned upload leaves is cleaned up.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use reqwest::Method;
use sha2::{Digest, Sha256};
use sluice_tests::{Reply, eventually, files_under, root, s3, token};
use tempfile::TempDir;

use crate::node::{Cluster, Node};

/// The example guests: `files` stores uploads as blobs.
fn examples() -> Vec<PathBuf> {
    vec![root().join("guest-examples")]
}

/// `len` bytes that differ with `seed`.
fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `[blobs]` table for a fresh prefix of the test bucket, and where the
/// prefix's objects of tenant `demo` are on the server's disk.
fn bucket(dir: &Path, more: &str) -> Result<(String, PathBuf)> {
    let prefix = s3::prefix(dir);
    let table = format!("{}{more}", s3::table(&prefix, dir)?);
    Ok((table, s3::prefix_dir(&prefix)?.join("demo/objects")))
}

async fn put(node: &Node, name: &str, body: Vec<u8>) -> Result<Reply> {
    let req = node
        .request(Method::PUT, &format!("/demo/files/{name}"))
        .bearer_auth(token("alice", "demo", &[]))
        .header("content-type", "image/png")
        .body(body);
    sluice_tests::send(req).await
}

async fn get(node: &Node, name: &str, headers: &[(&str, &str)]) -> Result<Reply> {
    let mut req = node
        .request(Method::GET, &format!("/demo/files/{name}"))
        .bearer_auth(token("alice", "demo", &[]));
    for (key, value) in headers {
        req = req.header(*key, *value);
    }
    sluice_tests::send(req).await
}

/// Waits until the objects in `dir` are exactly `contents`, in any order.
async fn objects_become(dir: &Path, contents: &[&[u8]]) -> Result<()> {
    let mut want: Vec<Vec<u8>> = contents.iter().map(|c| c.to_vec()).collect();
    want.sort();
    eventually(
        &format!("{} to hold {} objects", dir.display(), want.len()),
        || {
            let want = want.clone();
            async move {
                let mut have = Vec::new();
                for file in files_under(dir)? {
                    have.push(std::fs::read(file)?);
                }
                have.sort();
                Ok((have == want).then_some(()))
            }
        },
    )
    .await
}

/// A blob uploaded through node A is served by node B (whole, a range, a
/// conditional 304) though the nodes share no directory; a replacement
/// through B is what A serves next, and the replaced object leaves the
/// bucket after `delete_delay_secs`; a delete through A empties it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_blobs_through_the_bucket_alone() -> Result<()> {
    let dir = TempDir::new()?;
    let (table, objects) = bucket(dir.path(), "delete_delay_secs = 1\n")?;
    let cluster = Cluster::start(&examples(), &table).await?;
    let (a, b) = (&cluster.a, &cluster.b);

    let first = bytes(1, 300 * 1024);
    let put_first = put(a, "photo.png", first.clone()).await?;
    assert_eq!(put_first.status, 201, "{}", put_first.body);
    assert_eq!(put_first.body["etag"], sha256_hex(&first));
    let whole = get(b, "photo.png", &[]).await?;
    assert_eq!(whole.status, 200, "{}", whole.body);
    assert!(whole.raw == first, "node B served other bytes");
    let etag = whole.header("etag").to_owned();
    assert_eq!(etag, format!("\"{}\"", sha256_hex(&first)));
    let range = get(b, "photo.png", &[("range", "bytes=1000-1999")]).await?;
    assert_eq!(range.status, 206);
    assert_eq!(
        range.header("content-range"),
        format!("bytes 1000-1999/{}", first.len())
    );
    assert!(range.raw == first[1000..2000], "the range is other bytes");
    let cached = get(b, "photo.png", &[("if-none-match", &etag)]).await?;
    assert_eq!(cached.status, 304);
    objects_become(&objects, &[&first]).await?;
    for node in [a, b] {
        let local = files_under(&node.data().join("blobs"))?;
        assert!(local.is_empty(), "node {} wrote {local:?}", node.name);
    }

    let second = bytes(2, 200 * 1024);
    let replaced = put(b, "photo.png", second.clone()).await?;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    let served = get(a, "photo.png", &[]).await?;
    assert!(served.raw == second, "node A served the replaced bytes");
    objects_become(&objects, &[&second]).await?;

    let deleted = sluice_tests::send(
        a.request(Method::DELETE, "/demo/files/photo.png")
            .bearer_auth(token("alice", "demo", &[])),
    )
    .await?;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(get(b, "photo.png", &[]).await?.status, 404);
    objects_become(&objects, &[]).await
}

/// A node that dies between uploading an object and committing its row
/// (the `blob-commit` fault point) leaves an object no row names; the
/// other nodes' sweeper deletes it once older than `orphan_grace_secs`,
/// and never a committed blob's. An upload cut off after its first parts
/// (multipart, parts of 5 MiB) leaves no parts behind, and one that
/// completes in parts comes back whole from the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_and_abandoned_uploads_leave_nothing_behind() -> Result<()> {
    let dir = TempDir::new()?;
    let more = "orphan_grace_secs = 1\nsweep_interval_secs = 1\npart_size_bytes = 5242880\n";
    let (table, objects) = bucket(dir.path(), more)?;
    let cluster = Cluster::start(&examples(), &table).await?;
    let (a, b) = (&cluster.a, &cluster.b);
    let kept = bytes(3, 64 * 1024);
    assert_eq!(put(a, "kept.png", kept.clone()).await?.status, 201);

    let mut doomed =
        cluster.another_with_env("C", &examples(), &table, &[("SLUICE_FAULT", "blob-commit")])?;
    let lost = bytes(4, 64 * 1024);
    let answer = put(&doomed, "lost.png", lost.clone()).await;
    assert!(
        answer.as_ref().map_or(true, |r| !r.status.is_success()),
        "the crashed node answered {:?}",
        answer.map(|r| r.status)
    );
    let status = doomed.exited().await?;
    assert!(!status.success(), "node C exited {status}");
    assert_eq!(get(b, "lost.png", &[]).await?.status, 404);
    // The orphan, then only the committed blob once it is swept.
    objects_become(&objects, &[&kept])
        .await
        .with_context(|| format!("node A's log:\n{}", a.log_tail()))?;
    assert!(get(b, "kept.png", &[]).await?.raw == kept);

    // 7 MiB then a broken body: the first 5 MiB part was uploaded.
    let parts = futures_util::stream::iter([
        Ok::<_, std::io::Error>(bytes(5, 7 << 20)),
        Err(std::io::Error::other("the client gave up")),
    ]);
    let cut = a
        .request(Method::PUT, "/demo/files/cut.png")
        .bearer_auth(token("alice", "demo", &[]))
        .header("content-type", "image/png")
        .body(reqwest::Body::wrap_stream(parts))
        .send()
        .await;
    assert!(
        cut.as_ref().map_or(true, |r| !r.status().is_success()),
        "a broken upload was answered {:?}",
        cut.map(|r| r.status())
    );
    eventually("the cut upload's parts to be gone", || async {
        Ok((s3::unfinished_uploads()? == 0).then_some(()))
    })
    .await?;

    let big = bytes(6, 12 << 20);
    let stored = put(a, "big.png", big.clone()).await?;
    assert_eq!(stored.status, 201, "{}", stored.body);
    let served = get(b, "big.png", &[]).await?;
    assert_eq!(served.raw.len(), big.len());
    assert!(served.raw == big, "the multipart blob came back changed");
    objects_become(&objects, &[&kept, &big]).await
}
