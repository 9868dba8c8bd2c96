//! Loading a function: the bytes must be a component, its compilation is
//! cached (or boxed in a child process), its imports must be what Sluice
//! offers, and it must export a handler or a message handler.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use wasmtime::component::Component;

use super::code::{Code, Compiled, HttpExport, Linked, MessageExport, Source};
use super::{Exports, Function, LoadError, Runtime, compiler, sha256_hex};

/// The components loaded now, by the SHA-256 of their bytes. Entries are
/// weak: the code goes when the last function using it does.
#[derive(Default)]
pub(super) struct Shared {
    by_sha: Mutex<HashMap<String, Weak<Compiled>>>,
}

impl Shared {
    /// The loaded component of `sha`, if a live function holds it.
    fn get(&self, sha: &str) -> Option<Arc<Compiled>> {
        let map = self.by_sha.lock().unwrap_or_else(|e| e.into_inner());
        map.get(sha).and_then(Weak::upgrade)
    }

    /// How many components live functions hold.
    pub(super) fn live(&self) -> usize {
        let map = self.by_sha.lock().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|weak| weak.strong_count() > 0).count()
    }

    /// Shares `component` as `sha`'s, or the one another thread shared first.
    fn insert(&self, sha: &str, component: Component) -> Arc<Compiled> {
        let mut map = self.by_sha.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(first) = map.get(sha).and_then(Weak::upgrade) {
            return first;
        }
        // Forget the components no function holds any more, now and then:
        // the map stays within twice the live ones.
        if map.len() >= 64 && map.len().is_power_of_two() {
            map.retain(|_, weak| weak.strong_count() > 0);
        }
        let compiled = Arc::new(Compiled(component));
        map.insert(sha.to_owned(), Arc::downgrade(&compiled));
        compiled
    }
}

impl Runtime {
    /// Compiles the component at `path` and links it against the host's
    /// imports. It stays in memory while the function is live: the file may
    /// change under it.
    pub fn load(&self, tenant: &str, name: &str, path: &Path) -> Result<Function, LoadError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| LoadError::Compile {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let component = self.compile(&shown, &bytes, &sha256_hex(&bytes))?;
        self.link(tenant, name, None, &shown, &component, None)
    }

    /// Compiles `bytes` (whose SHA-256 is `sha`), or takes the copy a live
    /// function already holds, or loads the compilation cached by an
    /// earlier run. `shown` names the component in errors.
    pub fn compile(
        &self,
        shown: &str,
        bytes: &[u8],
        sha: &str,
    ) -> Result<Arc<Compiled>, LoadError> {
        self.compile_with(shown, sha, || Ok(Cow::Borrowed(bytes)))
    }

    /// [`Runtime::compile`], reading the bytes only if they must be compiled.
    pub(super) fn compile_with<'b>(
        &self,
        shown: &str,
        sha: &str,
        bytes: impl FnOnce() -> Result<Cow<'b, [u8]>, LoadError>,
    ) -> Result<Arc<Compiled>, LoadError> {
        if let Some(loaded) = self.compiled.get(sha) {
            return Ok(loaded);
        }
        // An artifact exists only for bytes that compiled: no header to check.
        let cached = (self.artifacts.as_ref()).and_then(|a| a.get(&self.engine, sha));
        let component = match cached {
            Some(component) => component,
            None => self.compile_new(shown, &bytes()?, sha)?,
        };
        Ok(self.compiled.insert(sha, component))
    }

    fn compile_new(&self, shown: &str, bytes: &[u8], sha: &str) -> Result<Component, LoadError> {
        check_header(shown, bytes)?;
        let compile_err = |message: String| LoadError::Compile {
            path: shown.to_owned(),
            message,
        };
        if let (Some(boxed), Some(artifacts)) = (&self.compile_box, &self.artifacts) {
            let artifact = compiler::compile_boxed(boxed, bytes).map_err(compile_err)?;
            return (artifacts.put_compiled(&self.engine, sha, &artifact)).map_err(compile_err);
        }
        let component =
            Component::new(&self.engine, bytes).map_err(|e| compile_err(format!("{e:#}")))?;
        if let Some(artifacts) = &self.artifacts
            && let Err(e) = artifacts.put(sha, &component)
        {
            tracing::warn!(component = %shown, error = %e, "could not cache the compiled component");
        }
        Ok(component)
    }

    /// Checks `compiled`'s imports against what Sluice offers, links it and
    /// finds its exports: a function ready to run. With a `source`, it is
    /// unloaded when idle and loaded from there again.
    pub fn link(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
        shown: &str,
        compiled: &Arc<Compiled>,
        source: Option<Source>,
    ) -> Result<Function, LoadError> {
        let linked = self.link_compiled(shown, compiled)?;
        let exports = Exports {
            requests: linked.http.is_some(),
            messages: linked.messages.is_some(),
        };
        Ok(self.function(
            tenant,
            name,
            version,
            exports,
            Code::new(Some(linked), source),
        ))
    }

    /// A function whose code is loaded from `source` on its first
    /// invocation. `exports` is what its manifest needs, checked when it
    /// was deployed.
    pub fn lazy(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
        exports: Exports,
        source: Source,
    ) -> Function {
        self.function(
            tenant,
            name,
            version,
            exports,
            Code::new(None, Some(source)),
        )
    }

    fn function(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
        exports: Exports,
        code: Code,
    ) -> Function {
        let code = Arc::new(code);
        self.resident.track(&code);
        Function {
            tenant: tenant.into(),
            name: name.into(),
            version,
            limits: self.default_limits,
            exports,
            code,
        }
    }

    /// Checks `compiled`'s imports, links it and finds its exports.
    pub(super) fn link_compiled(
        &self,
        shown: &str,
        compiled: &Arc<Compiled>,
    ) -> Result<Linked, LoadError> {
        let component = &compiled.0;
        let ty = component.component_type();
        for (import, _) in ty.imports(&self.engine) {
            if !is_allowed_import(import) {
                return Err(LoadError::Import {
                    path: shown.to_owned(),
                    import: import.to_owned(),
                    allowed: ALLOWED_IMPORTS,
                });
            }
        }
        let link_err = |e: wasmtime::Error| LoadError::Link {
            path: shown.to_owned(),
            message: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(component).map_err(link_err)?;
        let http = HttpExport::find(&pre);
        let messages = MessageExport::find(&pre);
        if http.is_none() && messages.is_none() {
            return Err(link_err(wasmtime::format_err!(
                "it exports neither sluice:function/handler nor sluice:function/message-handler"
            )));
        }
        Ok(Linked::new(pre, http, messages, compiled.clone()))
    }
}

/// What a component may import, for error messages.
const ALLOWED_IMPORTS: &str = "a function may import sluice:function/* and wasi:cli, wasi:clocks, \
    wasi:io, wasi:random and wasi:filesystem (which has no directories); \
    no network (wasi:sockets, wasi:http) and nothing else";

/// True for the interfaces a function may import. The linker holds more of
/// WASI than this; the network stays out even though it would be refused at
/// run time, so that a component that wants it is refused at deploy.
fn is_allowed_import(name: &str) -> bool {
    let interface = name.split('@').next().unwrap_or(name);
    let Some((package, _)) = interface.split_once('/') else {
        return false;
    };
    matches!(
        package,
        "sluice:function"
            | "wasi:cli"
            | "wasi:clocks"
            | "wasi:io"
            | "wasi:random"
            | "wasi:filesystem"
    )
}

/// Refuses anything but a component binary, saying what it is instead.
fn check_header(shown: &str, bytes: &[u8]) -> Result<(), LoadError> {
    let refuse = |message: &str| {
        Err(LoadError::NotComponent {
            path: shown.to_owned(),
            message: message.to_owned(),
        })
    };
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => refuse(
            "it is a core WebAssembly module; build for wasm32-wasip2, \
             or wrap it with `wasm-tools component new`",
        ),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', ..]) => refuse("unknown WebAssembly binary version"),
        _ if bytes.starts_with(b"(") => {
            refuse("it looks like WebAssembly text; upload the binary component")
        }
        _ => refuse("it does not start with the WebAssembly magic number"),
    }
}
