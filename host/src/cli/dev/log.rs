//! `sluice dev`'s log: one line per request and per message, with the time
//! each stage took and what the function printed, gathered from the host's
//! own tracing spans (`request`, `message` and one per stage).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The spans whose time is reported, in pipeline order.
const STAGES: [&str; 6] = [
    "receive",
    "authenticate",
    "validate",
    "process",
    "persist",
    "respond",
];

/// The layer: prints to stdout when a request's or a message's span closes.
pub struct DevLog;

/// A request or a message being handled.
#[derive(Default)]
struct Root {
    started: Option<Instant>,
    fields: Fields,
    /// Time per stage, summed over attempts.
    stages: Vec<(&'static str, Duration)>,
    attempts: u32,
    /// What the function printed and what went wrong, in order.
    lines: Vec<String>,
}

/// When a stage's span was entered first.
struct Started(Instant);

/// The fields of the spans and events this layer reads.
#[derive(Default)]
struct Fields {
    method: String,
    path: String,
    status: Option<u64>,
    tenant: String,
    function: String,
    topic: String,
    attempt: Option<u64>,
    message: String,
    stream: String,
    error: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "method" => &mut self.method,
            "path" => &mut self.path,
            "tenant" => &mut self.tenant,
            "function" => &mut self.function,
            "topic" => &mut self.topic,
            "message" => &mut self.message,
            "stream" => &mut self.stream,
            "error" => &mut self.error,
            _ => return,
        };
        value.clone_into(slot);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "status" => self.status = Some(value),
            "attempt" => self.attempt = Some(value),
            _ => self.record_debug(field, &value),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or_default());
    }
}

impl<S> Layer<S> for DevLog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let name = attrs.metadata().name();
        if name == "request" || name == "message" {
            let mut root = Root {
                started: Some(Instant::now()),
                ..Root::default()
            };
            attrs.record(&mut root.fields);
            span.extensions_mut().insert(root);
        } else if STAGES.contains(&name) {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(root) = span.extensions_mut().get_mut::<Root>() {
            values.record(&mut root.fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let guest = event.metadata().target() == "sluice::guest";
        if !guest && *event.metadata().level() > Level::WARN {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let mut extensions = span.extensions_mut();
            let Some(root) = extensions.get_mut::<Root>() else {
                continue;
            };
            let mut fields = Fields::default();
            event.record(&mut fields);
            let line = if guest {
                format!("{}: {}", fields.stream, fields.message)
            } else if fields.error.is_empty() {
                format!("{}: {}", event.metadata().level(), fields.message)
            } else {
                let level = event.metadata().level();
                format!("{level}: {}: {}", fields.message, fields.error)
            };
            root.lines.push(line);
            return;
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let name = span.name();
        if let Some(Started(at)) = span.extensions().get::<Started>() {
            let took = at.elapsed();
            if let Some(root) = span
                .scope()
                .skip(1)
                .find(|s| s.extensions().get::<Root>().is_some())
                && let Some(root) = root.extensions_mut().get_mut::<Root>()
            {
                if name == "process" {
                    root.attempts += 1;
                }
                match root.stages.iter_mut().find(|(stage, _)| *stage == name) {
                    Some((_, total)) => *total += took,
                    None => root.stages.push((name, took)),
                }
            }
            return;
        }
        if let Some(root) = span.extensions_mut().remove::<Root>() {
            let line = render(name, &root);
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}

/// `POST /demo/items 201 3.1 ms · receive 0.1 · … ` and the lines below it.
fn render(kind: &str, root: &Root) -> String {
    let f = &root.fields;
    let total = root.started.map(|s| s.elapsed()).unwrap_or_default();
    let clock = chrono::Local::now().format("%H:%M:%S");
    let mut line = if kind == "request" {
        let status = f.status.map_or("---".into(), |s| s.to_string());
        format!("{clock} {} {} {status}", f.method, f.path)
    } else {
        let failed = root.lines.iter().any(|l| !l.starts_with("std"));
        let outcome = if failed { "failed" } else { "done" };
        let attempt = f
            .attempt
            .map_or(String::new(), |a| format!(" (attempt {a})"));
        format!(
            "{clock} message {} → {}/{}{attempt} {outcome}",
            f.topic, f.tenant, f.function
        )
    };
    let _ = write!(line, " {}", ms(total));
    let mut stages = root.stages.clone();
    stages.sort_by_key(|(name, _)| STAGES.iter().position(|s| s == name));
    for (name, took) in stages {
        let _ = write!(line, " · {name} {}", ms(took));
    }
    if root.attempts > 1 {
        let _ = write!(line, " · {} runs", root.attempts);
    }
    line.push('\n');
    for printed in &root.lines {
        let _ = writeln!(line, "    │ {printed}");
    }
    line
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
