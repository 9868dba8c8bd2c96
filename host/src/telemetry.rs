//! Trace context across the host: the W3C `traceparent` a request comes
//! with, and the one a message carries from the invocation that sent it to
//! the consumer that handles it. The exporter itself is set up by the
//! binary (`cli/telemetry.rs`); with it off, every call here returns at
//! once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Called once the exporter is installed: spans carry trace context from now on.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// True when traces are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Makes `span` continue the trace of the request's `traceparent` header,
/// if it has a valid one. Call it before anything runs in the span.
pub fn continue_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if !enabled() {
        return;
    }
    let carrier: HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| {
            let value = headers.get(name)?.to_str().ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    continue_from(span, carrier);
}

/// Makes `span` continue the trace `traceparent` names (a message's
/// producer's).
pub fn continue_from_traceparent(span: &tracing::Span, traceparent: &str) {
    if !enabled() {
        return;
    }
    continue_from(
        span,
        HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]),
    );
}

fn continue_from(span: &tracing::Span, carrier: HashMap<String, String>) {
    let parent = TraceContextPropagator::new().extract(&carrier);
    // A missing or malformed header leaves the span a root; nothing to do.
    let _ = span.set_parent(parent);
}

/// The `traceparent` of `span`, for what it sends; `None` with traces off.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}
