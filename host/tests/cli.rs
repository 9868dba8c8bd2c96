//! The `sluice` binary as a user runs it: `serve` with no config file (the
//! development key), `token` for that key, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

/// Sends one HTTP/1.1 request over a plain socket and returns the status and body.
fn http(addr: &str, request: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[test]
fn serve_with_dev_key_token_and_sigterm() -> Result<(), Box<dyn std::error::Error>> {
    if !root()
        .join("target/wasm32-wasip2/guest/todo.wasm")
        .is_file()
    {
        return Err("guests are not built: run scripts/build-guests.sh".into());
    }
    let data = tempfile::tempdir()?;
    let mut server = Command::new(SLUICE)
        .current_dir(data.path())
        .args(["--data-dir", "data", "serve", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .arg("--functions-dir")
        .arg(root().join("guest-examples"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = server.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut log = String::new();
    let started = Instant::now();
    let addr = loop {
        let line = lines.next().ok_or("server exited before serving")??;
        log.push_str(&line);
        log.push('\n');
        if let Some(rest) = line.split("address=").nth(1) {
            break rest.split_whitespace().next().unwrap_or("").to_owned();
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("server did not start:\n{log}").into());
        }
    };
    assert!(log.contains("DEVELOPMENT key"), "log:\n{log}");
    // Keep draining the log so the server never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());

    let token = Command::new(SLUICE)
        .current_dir(data.path())
        .args([
            "--data-dir",
            "data",
            "token",
            "--sub",
            "alice",
            "--tenant",
            "demo",
        ])
        .output()?;
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout)?.trim().to_owned();

    let body = r#"{"title":"from the cli test"}"#;
    let (status, created) = http(
        &addr,
        &format!(
            "POST /demo/todos HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )?;
    assert_eq!(status, 201, "body: {created}");
    assert!(created.contains("from the cli test"));
    let (status, _) = http(
        &addr,
        "GET /demo/todos HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )?;
    assert_eq!(status, 401);

    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()?;
    assert!(killed.success());
    let exit = server.wait()?;
    assert!(exit.success(), "exit: {exit:?}");
    drain.join().map_err(|_| "log drain panicked")?;
    assert!(data.path().join("data/sluice.db").is_file());
    Ok(())
}
