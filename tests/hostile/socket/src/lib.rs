//! Test guest: tries to reach the network. Its component imports
//! `wasi:sockets`, so Sluice refuses it at deploy and it never runs.

use std::io::Write;
use std::net::TcpStream;

use sluice_sdk::{Error, Request, Response};

#[sluice_sdk::handler]
fn handle(_req: Request) -> Result<Response, Error> {
    let mut stream = TcpStream::connect("127.0.0.1:5432")
        .map_err(|e| Error::internal(format!("connect: {e}")))?;
    stream
        .write_all(b"exfiltrate")
        .map_err(|e| Error::internal(format!("write: {e}")))?;
    Ok(Response::text(200, "connected"))
}
