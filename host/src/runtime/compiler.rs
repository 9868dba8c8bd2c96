//! Compiling a component in a child process boxed in time and memory.
//!
//! Cranelift's work grows with what a component contains, and a thread
//! cannot be stopped: an upload built to make the compiler run for minutes
//! or eat gigabytes would take the host with it. So the host runs
//! `sluice compile-component` with the component on stdin, under an address
//! space limit, kills it at the deadline, and reads the compiled artifact
//! from its stdout.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine};

/// How compilations are boxed.
#[derive(Debug, Clone)]
pub struct CompileBox {
    /// The `sluice` binary, whose `compile-component` subcommand compiles.
    pub exe: PathBuf,
    /// Wall-clock time a compilation may take.
    pub timeout: Duration,
    /// Address space the compiling process may use.
    pub memory_bytes: u64,
    /// The engine meters fuel: compiled code must too.
    pub fuel: bool,
    /// The engine's wasm stack limit.
    pub max_wasm_stack: usize,
}

/// Code-generation settings shared by the host's engine and the compiling
/// child, so that what the child compiles loads in the host.
pub(crate) fn codegen_config(fuel: bool, max_wasm_stack: usize) -> Config {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .consume_fuel(fuel)
        .max_wasm_stack(max_wasm_stack)
        .wasm_component_model(true);
    config
}

/// Compiles `bytes` in a boxed child; returns the serialized artifact, or
/// why there is none, in words for the deployer.
pub(crate) fn compile_boxed(boxed: &CompileBox, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(&boxed.exe)
        .arg("compile-component")
        .arg("--max-memory-bytes")
        .arg(boxed.memory_bytes.to_string())
        .arg("--max-wasm-stack")
        .arg(boxed.max_wasm_stack.to_string())
        .args(boxed.fuel.then_some("--fuel"))
        // glibc reserves 64 MiB of address space per malloc arena; a few
        // arenas keep the limit about memory actually used.
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the compiler ({}): {e}", boxed.exe.display()))?;
    let (mut stdin, mut stdout, mut stderr) =
        match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
            (Some(i), Some(o), Some(e)) => (i, o, e),
            _ => return Err("the compiler's pipes could not be opened".into()),
        };
    // Pipes are drained on their own threads, so a full pipe never stalls
    // the child and the deadline below is the only wait.
    let input = bytes.to_vec();
    let feeding = std::thread::spawn(move || stdin.write_all(&input));
    let reading = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let complaining = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let deadline = Instant::now() + boxed.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "compilation took longer than {} ms; the component is too large or too complex",
                    boxed.timeout.as_millis()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for the compiler: {e}")),
        }
    };
    let _ = feeding.join();
    let artifact = reading.join().ok().and_then(Result::ok).unwrap_or_default();
    let complaint = complaining.join().unwrap_or_default();
    if status.success() && !artifact.is_empty() {
        return Ok(artifact);
    }
    let complaint = complaint.trim();
    // Exit code 1 is a compile error the child explained. Anything else (an
    // abort on a refused allocation, a panic on a thread that could not
    // start) is the address-space limit.
    if status.code() == Some(1) {
        return Err(complaint
            .strip_prefix("error: ")
            .unwrap_or(complaint)
            .to_owned());
    }
    tracing::warn!(%status, output = complaint, "the compiler stopped");
    Err(format!(
        "compilation needed more than {} bytes of memory; the component is too large or too complex",
        boxed.memory_bytes
    ))
}

/// The child's side: limits its own address space, compiles the component
/// on stdin and writes the artifact to stdout.
pub fn compile_component(
    fuel: bool,
    max_wasm_stack: usize,
    max_memory_bytes: u64,
) -> Result<(), String> {
    let limit = rustix::process::Rlimit {
        current: Some(max_memory_bytes),
        maximum: Some(max_memory_bytes),
    };
    rustix::process::setrlimit(rustix::process::Resource::As, limit)
        .map_err(|e| format!("cannot limit the compiler's memory: {e}"))?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(abort_if_out_of_memory)
        .map_err(|e| format!("reading the component: {e}"))?;
    let engine =
        Engine::new(&codegen_config(fuel, max_wasm_stack)).map_err(|e| format!("{e:#}"))?;
    let artifact = engine
        .precompile_component(&bytes)
        .map_err(|e| format!("{e:#}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&artifact)
        .and_then(|()| out.flush())
        .map_err(abort_if_out_of_memory)
        .map_err(|e| format!("writing the artifact: {e}"))
}

/// `read_to_end` reports a refused allocation as an error rather than
/// aborting; abort as every other refused allocation does, so the parent
/// reports the memory limit, not an explained compile error (exit code 1).
fn abort_if_out_of_memory(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::OutOfMemory {
        std::process::abort();
    }
    e
}
