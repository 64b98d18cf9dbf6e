//! Span export over OTLP/HTTP (JSON), for `wasmrpc host --otlp-endpoint`.
//!
//! The router records its spans itself ([`super::trace`]): their ids come
//! from the calls' `traceparent`s, which the SDK's tracer would make up
//! anew. A finished span goes to the OpenTelemetry SDK's batch processor
//! ([`SpanSink::send`]: a bounded queue, full means dropped, never a wait),
//! whose thread hands batches to the OTLP exporter. The exporter sends over
//! [`Sender`], one HTTP/1.1 exchange run on the host's tokio runtime with
//! the hyper the admin listener uses. Failures are logged once a minute at
//! most ([`Reported`]); they never reach a call. [`SpanSink::shutdown`]
//! exports what is queued, at the end of the host's drain.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::Full;
use opentelemetry::KeyValue;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanExporter, SpanProcessor,
};

/// Where and how often spans are exported.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The collector's base URL (`http://host:4318`); spans go to
    /// `<endpoint>/v1/traces`.
    pub endpoint: String,
    /// How long finished spans wait to be sent in a batch; `None`: the
    /// SDK's default (`OTEL_BSP_SCHEDULE_DELAY`, else 5 s).
    pub flush_interval: Option<Duration>,
}

/// Longest one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a failing exporter is logged.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Where a host's finished spans go: the batch processor of its exporter.
pub struct SpanSink {
    processor: BatchSpanProcessor,
}

impl SpanSink {
    /// Starts exporting the spans of the host `host_id` of `region` to
    /// `config.endpoint`; the HTTP exchanges run on `runtime`.
    ///
    /// # Errors
    ///
    /// When the endpoint is not an `http://` URL (TLS to a collector is not
    /// supported: run one beside the host), or the exporter cannot be built.
    pub fn start(
        config: &OtlpConfig,
        region: &str,
        host_id: &str,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<SpanSink> {
        let endpoint = traces_url(&config.endpoint)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Sender { runtime })
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .with_context(|| format!("cannot export spans to `{endpoint}`"))?;
        let mut batch = BatchConfigBuilder::default();
        if let Some(interval) = config.flush_interval {
            batch = batch.with_scheduled_delay(interval);
        }
        let mut processor = BatchSpanProcessor::builder(Reported::new(exporter, endpoint))
            .with_batch_config(batch.build())
            .build();
        processor.set_resource(
            &Resource::builder()
                .with_service_name("wasmrpc")
                .with_attributes([
                    KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                    KeyValue::new("service.instance.id", host_id.to_owned()),
                    KeyValue::new("wasmrpc.region", region.to_owned()),
                    KeyValue::new("wasmrpc.host", host_id.to_owned()),
                ])
                .build(),
        );
        Ok(SpanSink { processor })
    }

    /// Queues a finished span for export; dropped if the queue is full.
    pub fn send(&self, span: SpanData) {
        self.processor.on_end(span);
    }

    /// Exports every span queued and stops the exporter. Blocks: call it
    /// from a blocking task (the export itself runs on the tokio runtime).
    pub fn shutdown(&self) {
        if let Err(error) = self.processor.shutdown() {
            tracing::warn!("spans not exported at shutdown: {error}");
        }
    }
}

/// `<base>/v1/traces` for an `http://` base URL.
fn traces_url(base: &str) -> anyhow::Result<String> {
    let Some(rest) = base.strip_prefix("http://") else {
        bail!("the OTLP endpoint `{base}` is not an `http://` URL");
    };
    if rest.is_empty() || rest.starts_with('/') {
        bail!("the OTLP endpoint `{base}` names no host");
    }
    Ok(format!("{}/v1/traces", base.trim_end_matches('/')))
}

/// The exporter, logging its failures at most once per [`REPORT_EVERY`]
/// (with the count of failed batches) and its recovery once.
struct Reported<E> {
    inner: E,
    endpoint: String,
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    /// Batches that failed since the last line logged.
    unreported: u64,
    /// When a failure was last logged; `None` while exports succeed.
    reported: Option<Instant>,
}

impl<E> Reported<E> {
    fn new(inner: E, endpoint: String) -> Self {
        Reported {
            inner,
            endpoint,
            failures: Mutex::new(Failures::default()),
        }
    }

    fn note(&self, outcome: &OTelSdkResult) {
        let mut failures = self.failures.lock().expect("failures lock");
        match outcome {
            Ok(()) => {
                if failures.reported.take().is_some() {
                    tracing::info!(endpoint = %self.endpoint, "exporting spans again");
                }
                failures.unreported = 0;
            }
            Err(error) => {
                failures.unreported += 1;
                if failures
                    .reported
                    .is_none_or(|last| last.elapsed() >= REPORT_EVERY)
                {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        failed_batches = failures.unreported,
                        "cannot export spans: {error}"
                    );
                    failures.reported = Some(Instant::now());
                    failures.unreported = 0;
                }
            }
        }
    }
}

impl<E> fmt::Debug for Reported<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reported")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl<E: SpanExporter> SpanExporter for Reported<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let outcome = self.inner.export(batch).await;
        self.note(&outcome);
        outcome
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter's HTTP client: one HTTP/1.1 exchange per batch, run on the
/// host's tokio runtime (the batch processor's thread waits for it).
#[derive(Debug)]
struct Sender {
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for Sender {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // Made inside the task: a timer needs the runtime, and this future
        // is polled on the batch processor's thread.
        let exchange = async move { tokio::time::timeout(EXPORT_TIMEOUT, send(request)).await };
        match self.runtime.spawn(exchange).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(format!("no answer within {EXPORT_TIMEOUT:?}").into()),
            Err(error) => Err(format!("the export task failed: {error}").into()),
        }
    }
}

async fn send(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let authority = request
        .uri()
        .authority()
        .ok_or("the endpoint names no host")?
        .to_string();
    let addr = if request.uri().port().is_some() {
        authority.clone()
    } else {
        format!("{authority}:80")
    };
    let (mut parts, body) = request.into_parts();
    parts
        .headers
        .insert(hyper::header::HOST, authority.parse()?);
    // hyper sends the path; the URI's scheme and authority are the Host's.
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()?;
    let request = hyper::Request::from_parts(parts, Full::new(body));
    Ok(super::http::send(&addr, request).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_go_to_v1_traces_under_an_http_endpoint() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        for bad in [
            "https://collector:4318",
            "collector:4318",
            "http://",
            "http:///x",
        ] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }
}
