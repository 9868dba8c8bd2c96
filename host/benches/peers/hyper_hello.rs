//! The HTTP floor peer for `scripts/bench.sh`: a bare hyper 1 server on a
//! tokio multi-thread runtime answering every request with "hello", built
//! from the same hyper, tokio and allocator as `sluice` so the ratio of
//! Sluice's health route to it is the cost of Sluice's own HTTP layer.
//!
//! `cargo run --release -p sluice-host --example hyper-hello -- 127.0.0.1:18090`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let hello = service_fn(|_: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), hello)
                .await;
        });
    }
}
