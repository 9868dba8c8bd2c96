//! A function's code in memory: linked at deploy, or on its first
//! invocation after a restart, and unloaded again when it has been idle for
//! a while, so a host holds compiled code only for the functions in use.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use wasmtime::component::{Component, InstancePre};

use super::bindings::exports::sluice::function::{handler, message_handler};
use super::bindings::legacy::exports::sluice::function::{
    handler as legacy_handler, message_handler as legacy_message_handler,
};
use super::state::Sandbox;
use super::{InvokeError, LoadError, Runtime};

/// Reads a component's bytes again, to compile it when no cached artifact has it.
pub type ReadBytes = Arc<dyn Fn() -> std::io::Result<Vec<u8>> + Send + Sync>;

/// Where a function's code comes from, to load it (again) when needed.
#[derive(Clone)]
pub struct Source {
    /// The SHA-256 of the component's bytes.
    pub sha: String,
    /// How errors name it, e.g. `acme/todos v3`.
    pub shown: String,
    /// Its bytes, content-addressed, so they never change under `sha`.
    pub read: ReadBytes,
}

/// A compiled component: its code is in memory once however many functions
/// (of one tenant or many) deploy the same bytes.
pub struct Compiled(pub(super) Component);

/// The request handler a component exports, of the contract it was built
/// against.
pub(super) enum HttpExport {
    /// `sluice:function/handler@0.2.0`.
    Current(handler::GuestIndices),
    /// `sluice:function/handler@0.1.0`: no route name, no `routes`.
    Legacy(legacy_handler::GuestIndices),
}

/// The message handler a component exports, of the contract it was built
/// against.
pub(super) enum MessageExport {
    /// `sluice:function/message-handler@0.2.0`.
    Current(message_handler::GuestIndices),
    /// `sluice:function/message-handler@0.1.0`.
    Legacy(legacy_message_handler::GuestIndices),
}

impl HttpExport {
    /// The handler `pre` exports, current first.
    pub(super) fn find(pre: &InstancePre<Sandbox>) -> Option<Self> {
        (handler::GuestIndices::new(pre).ok().map(Self::Current)).or_else(|| {
            legacy_handler::GuestIndices::new(pre)
                .ok()
                .map(Self::Legacy)
        })
    }
}

impl MessageExport {
    /// The message handler `pre` exports, current first.
    pub(super) fn find(pre: &InstancePre<Sandbox>) -> Option<Self> {
        (message_handler::GuestIndices::new(pre)
            .ok()
            .map(Self::Current))
        .or_else(|| (legacy_message_handler::GuestIndices::new(pre).ok()).map(Self::Legacy))
    }
}

/// A linked component, ready to instantiate.
pub(super) struct Linked {
    pub(super) pre: InstancePre<Sandbox>,
    pub(super) http: Option<HttpExport>,
    pub(super) messages: Option<MessageExport>,
    /// Keeps its compiled code shared with the other functions of the same bytes.
    _compiled: Arc<Compiled>,
}

impl Linked {
    pub(super) fn new(
        pre: InstancePre<Sandbox>,
        http: Option<HttpExport>,
        messages: Option<MessageExport>,
        compiled: Arc<Compiled>,
    ) -> Self {
        Self {
            pre,
            http,
            messages,
            _compiled: compiled,
        }
    }
}

/// One function's code: in memory or not, and how to bring it back.
pub(super) struct Code {
    linked: ArcSwapOption<Linked>,
    /// `None`: never unloaded (a functions directory's file may change).
    source: Option<Source>,
    /// One load at a time; the loader holds it to the end even if the
    /// invocation that started it is cancelled.
    loading: Arc<tokio::sync::Mutex<()>>,
    /// When it last ran, in seconds of the runtime's clock.
    used: AtomicU64,
}

impl Code {
    pub(super) fn new(linked: Option<Linked>, source: Option<Source>) -> Self {
        Self {
            linked: ArcSwapOption::new(linked.map(Arc::new)),
            source,
            loading: Arc::new(tokio::sync::Mutex::new(())),
            used: AtomicU64::new(0),
        }
    }
}

/// The functions that can be unloaded, and the clock their use is timed by.
pub(super) struct Resident {
    codes: Mutex<Vec<Weak<Code>>>,
    clock: Instant,
    /// Unload a function idle this long; `None`: never.
    idle: Option<Duration>,
}

impl Resident {
    pub(super) fn new(idle: Option<Duration>) -> Self {
        Self {
            codes: Mutex::new(Vec::new()),
            clock: Instant::now(),
            idle,
        }
    }

    fn now(&self) -> u64 {
        self.clock.elapsed().as_secs()
    }

    /// Follows `code` for unloading, if it can be loaded again.
    pub(super) fn track(&self, code: &Arc<Code>) {
        if code.source.is_none() || self.idle.is_none() {
            return;
        }
        code.used.store(self.now(), Ordering::Relaxed);
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the functions gone, now and then: the list stays within
        // twice the live ones.
        if codes.len() >= 64 && codes.len().is_power_of_two() {
            codes.retain(|weak| weak.strong_count() > 0);
        }
        codes.push(Arc::downgrade(code));
    }

    /// Unloads every function idle for longer than the limit; returns how many.
    pub(super) fn unload_idle(&self) -> usize {
        let Some(idle) = self.idle else { return 0 };
        let cutoff = self.now().saturating_sub(idle.as_secs());
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.retain(|weak| weak.strong_count() > 0);
        let mut unloaded = 0;
        for code in codes.iter().filter_map(Weak::upgrade) {
            // An invocation running now holds its own reference to the code.
            if code.used.load(Ordering::Relaxed) < cutoff && code.linked.swap(None).is_some() {
                unloaded += 1;
            }
        }
        unloaded
    }

    /// Runs [`Resident::unload_idle`] on a thread of its own until `stop`.
    pub(super) fn sweep(self: &Arc<Self>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
        let Some(idle) = self.idle else { return Ok(()) };
        let every = (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
        let resident = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("sluice-unload".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    let Some(resident) = resident.upgrade() else {
                        return;
                    };
                    let n = resident.unload_idle();
                    if n > 0 {
                        tracing::debug!(functions = n, "idle functions unloaded");
                    }
                }
            })
            .map(drop)
    }
}

impl Runtime {
    /// `code`, linked: in memory already, or loaded now (from the shared
    /// components, the artifact cache, or compiled) on a blocking thread.
    pub(super) async fn linked(
        self: &Arc<Self>,
        code: &Arc<Code>,
    ) -> Result<Arc<Linked>, InvokeError> {
        code.used.store(self.resident.now(), Ordering::Relaxed);
        if let Some(linked) = code.linked.load_full() {
            return Ok(linked);
        }
        let guard = code.loading.clone().lock_owned().await;
        if let Some(linked) = code.linked.load_full() {
            return Ok(linked);
        }
        let (runtime, loading) = (self.clone(), code.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            let _one_at_a_time = guard;
            let linked = Arc::new(runtime.relink(&loading)?);
            loading.linked.store(Some(linked.clone()));
            Ok::<_, LoadError>(linked)
        })
        .await
        .map_err(|e| InvokeError::Instantiate(format!("loading the function failed: {e}")))?;
        loaded.map_err(|e| {
            tracing::error!(error = %e, "a deployed function could not be loaded");
            InvokeError::Instantiate(e.to_string())
        })
    }

    /// Compiles (or finds) and links `code`'s component again.
    fn relink(&self, code: &Code) -> Result<Linked, LoadError> {
        let Some(source) = &code.source else {
            return Err(LoadError::Compile {
                path: "a function".into(),
                message: "its code was unloaded and has no source to load it from".into(),
            });
        };
        let compiled = self.compile_with(&source.shown, &source.sha, || {
            (source.read)()
                .map(Cow::Owned)
                .map_err(|e| LoadError::Compile {
                    path: source.shown.clone(),
                    message: e.to_string(),
                })
        })?;
        self.link_compiled(&source.shown, &compiled)
    }
}
