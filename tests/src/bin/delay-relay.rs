//! A TCP relay that adds a fixed one-way delay each way, so connections
//! through it pay a round trip of `RTT_MS` as between two machines.
//!
//! `scripts/cluster-bench.sh` puts one between each node and PostgreSQL.
//! This kernel has no netem qdisc to delay a network namespace's link, so
//! the delay is made here, in user space. Bytes keep their order; each
//! chunk read is written `RTT_MS / 2` later. Plain threads and
//! `thread::sleep` (nanosleep): async timers tick in whole milliseconds,
//! which would round a 0.5 ms delay up.
//!
//! Usage: `delay-relay [LISTEN_HOST:]LISTEN_PORT TARGET_HOST:PORT RTT_MS`
//! (the listen host defaults to 127.0.0.1).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Chunks read and not yet due, and whether the reader is done.
#[derive(Default)]
struct Line {
    chunks: VecDeque<(Instant, Vec<u8>)>,
    closed: bool,
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let line = Arc::new((Mutex::new(Line::default()), Condvar::new()));
    let sender = {
        let line = line.clone();
        thread::spawn(move || {
            let (lock, ready) = &*line;
            loop {
                let next = {
                    let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
                    while state.chunks.is_empty() && !state.closed {
                        state = ready.wait(state).unwrap_or_else(|e| e.into_inner());
                    }
                    state.chunks.pop_front()
                };
                let Some((due, data)) = next else { break };
                thread::sleep(due.saturating_duration_since(Instant::now()));
                if to.write_all(&data).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })
    };
    let mut buffer = vec![0; 65536];
    let (lock, ready) = &*line;
    while let Ok(n @ 1..) = from.read(&mut buffer) {
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        state
            .chunks
            .push_back((Instant::now() + delay, buffer[..n].to_vec()));
        ready.notify_one();
    }
    lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
    ready.notify_one();
    let _ = sender.join();
}

fn serve(client: TcpStream, target: &str, delay: Duration) -> Result<()> {
    let server = TcpStream::connect(target)?;
    // Each chunk goes out at once, as its peer wrote it: Nagle's algorithm
    // would hold small writes back for a delayed ACK (40 ms).
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client2, server2) = (client.try_clone()?, server.try_clone()?);
    let back = thread::spawn(move || pump(server2, client2, delay));
    pump(client, server, delay);
    let _ = back.join();
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, target, rtt_ms] = &args[..] else {
        anyhow::bail!("usage: delay-relay [LISTEN_HOST:]LISTEN_PORT TARGET_HOST:PORT RTT_MS");
    };
    let rtt: f64 = rtt_ms.parse().context("RTT_MS")?;
    let delay = Duration::from_secs_f64(rtt / 2000.0);
    let listen = if listen.contains(':') {
        listen.clone()
    } else {
        format!("127.0.0.1:{listen}")
    };
    let listener = TcpListener::bind(&listen).with_context(|| format!("listening on {listen}"))?;
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let target = target.clone();
        thread::spawn(move || {
            if let Err(e) = serve(client, &target, delay) {
                eprintln!("delay-relay: {e}");
            }
        });
    }
    Ok(())
}
