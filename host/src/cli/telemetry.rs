//! OpenTelemetry traces for `sluice serve`: the host's `tracing` spans
//! (one per request, one per stage, one per message) exported over
//! OTLP/HTTP with protobuf, batched on a thread of their own, sent by the
//! host's own hyper and rustls.

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use sluice_host::config::TelemetryConfig;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exporter, flushed and stopped by [`Telemetry::shutdown`].
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports what is still buffered, then stops.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "traces not all exported at shutdown");
            }
        })
        .await;
    }
}

/// True when traces are to be exported: `[telemetry] enabled`, or an OTLP
/// endpoint in the environment, unless `OTEL_SDK_DISABLED=true`.
pub fn wanted(config: &TelemetryConfig) -> bool {
    let env = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled
        && (config.enabled
            || env("OTEL_EXPORTER_OTLP_ENDPOINT")
            || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The layer that turns the host's spans into OpenTelemetry spans, and the
/// exporter behind it. Call within the tokio runtime.
pub fn install<S>(config: &TelemetryConfig) -> Result<(impl Layer<S>, Telemetry)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Sender::new()?)
        .with_timeout(EXPORT_TIMEOUT);
    if let Some(endpoint) = &config.endpoint {
        exporter = exporter.with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')));
    }
    let exporter = exporter.build().context("setting up the OTLP exporter")?;
    let service = (config.service_name.clone())
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
        .unwrap_or_else(|| "sluice".into());
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let ratio = config.sample_ratio.clamp(0.0, 1.0);
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("sluice");
    sluice_host::telemetry::enable();
    // The host's spans only; the dependencies' are not the operator's story.
    let spans = Targets::new().with_target("sluice_host", tracing::Level::INFO);
    // Not attached as the current OpenTelemetry context on enter: a span
    // then stays a builder until it closes, so the name and attributes a
    // request learns after routing (`otel.name`: `POST /demo/todos/{id}`)
    // are still its own.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_context_activation(false)
        .with_threads(false)
        .with_filter(spans);
    Ok((layer, Telemetry { provider }))
}

/// Sends OTLP requests from the exporter's thread on the host's runtime.
#[derive(Debug)]
struct Sender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl Sender {
    fn new() -> Result<Self> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            runtime: tokio::runtime::Handle::try_current()
                .context("traces need the tokio runtime")?,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for Sender {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        // The exporter's thread has no runtime of its own.
        let sent = self.runtime.spawn(async move {
            let response = tokio::time::timeout(EXPORT_TIMEOUT, client.request(request)).await??;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        });
        sent.await?
    }
}
