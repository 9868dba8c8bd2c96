//! Traces: a real `sluice serve` exports OpenTelemetry spans over OTLP/HTTP
//! to a real receiver on loopback. A request continues its caller's
//! `traceparent`, every stage is a child span with the request's
//! attributes, and the message it sends carries the trace to the consumer
//! that handles it, whose commit is in the same trace.

use anyhow::{Context, Result};
use serde_json::json;
use sluice_tests::otlp::{Received, Receiver};
use sluice_tests::{Process, root, token};
use tempfile::TempDir;

/// The caller's trace: W3C's own example.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// OTLP's span kinds.
const SERVER: i32 = 2;
const CONSUMER: i32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_and_its_notification_are_one_trace() -> Result<()> {
    let receiver = Receiver::start().await?;
    let data = TempDir::new()?;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "sluice-e2e"),
        // Export every 100 ms rather than every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let host = Process::start_with_env(data.path(), &[root().join("guest-examples")], "", &env)?;
    let client = reqwest::Client::builder()
        .timeout(sluice_tests::HANG_GUARD)
        .build()?;
    let (alice, bob) = (token("alice", "demo", &[]), token("bob", "demo", &[]));
    let post = |path: &str, who: &str, body: serde_json::Value| {
        client
            .post(format!("{}/demo{path}", host.base))
            .bearer_auth(who)
            .json(&body)
    };
    let made = post("/channels", &alice, json!({ "name": "ops" }))
        .send()
        .await?;
    assert_eq!(made.status(), 201);
    let joined = post("/channels/ops/members", &alice, json!({ "subject": "bob" }))
        .send()
        .await?;
    assert!(joined.status().is_success());

    let posted = post("/channels/ops/posts", &bob, json!({ "text": "hi" }))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .send()
        .await?;
    assert_eq!(posted.status(), 201);

    let in_trace = |s: &Received| s.trace_id() == TRACE_ID;
    let spans = receiver
        .wait_for("the consumer's commit in the caller's trace", |spans| {
            let message = spans
                .iter()
                .find(|s| in_trace(s) && s.span.name == "message channel-notifications");
            message.is_some_and(|m| {
                spans
                    .iter()
                    .any(|s| s.parent_id() == m.span_id() && s.span.name == "persist")
            })
        })
        .await?;
    let traced: Vec<&Received> = spans.iter().filter(|s| in_trace(s)).collect();
    let named = |name: &str, parent: &str| {
        traced
            .iter()
            .find(|s| s.span.name == name && s.parent_id() == parent)
            .copied()
            .with_context(|| format!("no span {name} under {parent}: {traced:#?}"))
    };

    // The request: a server span, child of the caller's.
    let request = named("POST /demo/channels/{channel}/posts", CALLER_SPAN)?;
    assert_eq!(request.service, "sluice-e2e");
    assert_eq!(request.span.kind, SERVER);
    for (key, value) in [
        ("tenant", "demo"),
        ("function", "channels"),
        ("route", "create-post"),
        ("status", "201"),
        ("outcome", "ok"),
        ("method", "POST"),
        ("path", "/demo/channels/ops/posts"),
    ] {
        assert_eq!(
            request.attr(key).as_deref(),
            Some(value),
            "{key}: {request:#?}"
        );
    }
    assert!(request.attr("request_id").is_some());

    // Its stages, each a child of it.
    let id = request.span_id();
    for stage in [
        "receive",
        "authenticate",
        "validate",
        "process",
        "persist",
        "respond",
    ] {
        named(stage, &id)?;
    }
    assert_eq!(named("process", &id)?.attr("attempt").as_deref(), Some("1"));
    let persist = named("persist", &id)?;
    let batch: u64 = persist.attr("batch").context("no batch size")?.parse()?;
    assert!(batch >= 1, "{persist:#?}");
    assert!(persist.attr("wait_us").is_some(), "{persist:#?}");

    // The notification it sent: a consumer span continuing the request,
    // with the consumer's own run and commit under it.
    let message = named("message channel-notifications", &id)?;
    assert_eq!(message.span.kind, CONSUMER);
    assert_eq!(message.attr("function").as_deref(), Some("channels"));
    assert_eq!(message.attr("outcome").as_deref(), Some("ok"));
    assert_eq!(message.attr("attempt").as_deref(), Some("1"));
    let consumer = message.span_id();
    named("process", &consumer)?;
    named("persist", &consumer)?;
    drop(host);
    Ok(())
}

/// A request without a `traceparent` starts a trace of its own, and one
/// with a malformed header is not refused for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_caller_starts_its_own_trace() -> Result<()> {
    let receiver = Receiver::start().await?;
    let data = TempDir::new()?;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let host = Process::start_with_env(data.path(), &[root().join("guest-examples")], "", &env)?;
    let client = reqwest::Client::builder()
        .timeout(sluice_tests::HANG_GUARD)
        .build()?;
    let alice = token("alice", "demo", &[]);
    let url = format!("{}/demo/todos", host.base);
    let plain = client.get(&url).bearer_auth(&alice).send().await?;
    assert_eq!(plain.status(), 200);
    let odd = client
        .get(&url)
        .bearer_auth(&alice)
        .header("traceparent", "not a trace")
        .send()
        .await?;
    assert_eq!(odd.status(), 200);
    let spans = receiver
        .wait_for("two requests", |spans| {
            spans
                .iter()
                .filter(|s| s.span.name == "GET /demo/todos")
                .count()
                == 2
        })
        .await?;
    let requests: Vec<_> = spans
        .iter()
        .filter(|s| s.span.name == "GET /demo/todos")
        .collect();
    for request in &requests {
        assert_eq!(request.parent_id(), "", "a root span");
        assert_eq!(request.service, "sluice");
        assert_eq!(request.attr("route").as_deref(), Some("list-todos"));
    }
    assert_ne!(requests[0].trace_id(), requests[1].trace_id());
    drop(host);
    Ok(())
}
