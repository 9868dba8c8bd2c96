//! Streaming: a large file goes up and comes back without the host holding it.

use super::*;

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
