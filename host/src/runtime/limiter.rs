//! What stops a guest at a limit and remembers which one it was: memory and
//! table growth, and captured output.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::config::limits::{Exceeded, Limit};

/// Component instances one invocation may create: a Rust component holds a
/// handful (its own, the WASI adapter's); more is an attack on the pool.
const MAX_INSTANCES: usize = 16;

/// Refuses growth past the function's memory and table limits, remembering
/// the first refusal so the invocation is failed for it.
pub(crate) struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    pub(crate) exceeded: Option<Exceeded>,
}

impl Limiter {
    pub(crate) fn new(memory_bytes: usize, table_elements: usize) -> Self {
        Self {
            memory_bytes,
            table_elements,
            exceeded: None,
        }
    }

    fn refuse(&mut self, exceeded: Exceeded) -> bool {
        self.exceeded.get_or_insert(exceeded);
        false
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired <= self.memory_bytes {
            return Ok(true);
        }
        // `memory.grow` returns -1 and the guest decides; a Rust guest aborts.
        Ok(self.refuse(Exceeded::new(
            Limit::Memory,
            self.memory_bytes,
            format!(
                "the function tried to grow its memory from {current} to {desired} bytes, \
                 above its limit of {} bytes",
                self.memory_bytes
            ),
        )))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired <= self.table_elements {
            return Ok(true);
        }
        Ok(self.refuse(Exceeded::new(
            Limit::Table,
            self.table_elements,
            format!(
                "the function tried to grow a table from {current} to {desired} elements, \
                 above its limit of {}",
                self.table_elements
            ),
        )))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_INSTANCES * 4
    }

    fn memories(&self) -> usize {
        MAX_INSTANCES
    }
}

/// stdout or stderr kept in memory up to `log_bytes`. A write past that
/// traps the guest, and the pipe remembers it overflowed.
#[derive(Clone)]
pub(crate) struct LogPipe {
    inner: MemoryOutputPipe,
    overflowed: Arc<AtomicBool>,
}

impl LogPipe {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: MemoryOutputPipe::new(capacity),
            overflowed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// What the guest wrote, up to the capacity.
    pub(crate) fn contents(&self) -> Bytes {
        self.inner.contents()
    }

    /// True once the guest tried to write past the capacity.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    fn note<T>(&self, result: Result<T, StreamError>) -> Result<T, StreamError> {
        if result.is_err() {
            self.overflowed.store(true, Ordering::Relaxed);
        }
        result
    }
}

#[async_trait::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        let written = self.inner.write(bytes);
        self.note(written)
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        let room = self.inner.check_write();
        self.note(room)
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    // Only WASIp3 writes through this; Sluice's worlds are WASIp2.
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.inner.clone())
    }
}
