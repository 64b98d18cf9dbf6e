//! A tiny OTLP/HTTP trace receiver: what hosts started with
//! `--otlp-endpoint` export their spans to.
//!
//! It accepts `POST /v1/traces` with a JSON body (the OTLP JSON encoding),
//! answers `200 {}` and keeps the spans. It runs on a thread of its own,
//! so a test that blocks its own thread does not stall it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

use crate::eventually;

/// One span as exported: ids in lowercase hex, attributes as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP's span kind: 2 is server.
    pub kind: i64,
    /// OTLP's status code: 0 unset, 1 ok, 2 error.
    pub status_code: i64,
    pub start_unix_nano: u128,
    pub end_unix_nano: u128,
    pub attributes: BTreeMap<String, String>,
    /// The attributes of the resource that exported it (the host).
    pub resource: BTreeMap<String, String>,
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    /// Bodies that were not OTLP JSON, for the failure message.
    rejected: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Clone)]
struct Collected {
    spans: Arc<Mutex<Vec<Span>>>,
    rejected: Arc<Mutex<Vec<String>>>,
}

impl OtlpReceiver {
    /// Listens on a free loopback port.
    pub fn start() -> OtlpReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let collected = Collected {
            spans: Arc::default(),
            rejected: Arc::default(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = collected.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("receiver runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = Router::new()
                    .route("/v1/traces", post(receive))
                    .with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        OtlpReceiver {
            addr,
            spans: collected.spans,
            rejected: collected.rejected,
            stop: Some(stop),
        }
    }

    /// The base URL to give `--otlp-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far, in order of arrival.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("spans lock").clone()
    }

    /// Waits up to `timeout` until at least `count` spans have arrived,
    /// then a little longer for any extra, and returns them all.
    ///
    /// # Panics
    ///
    /// When fewer arrive in time; the message lists those that did.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Span> {
        let arrived = eventually(timeout, || self.spans().len() >= count);
        assert!(
            arrived,
            "expected {count} spans, got {:#?}; bodies refused: {:?}",
            self.spans(),
            self.rejected.lock().unwrap()
        );
        self.spans()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn receive(State(collected): State<Collected>, body: Bytes) -> (StatusCode, &'static str) {
    let text = String::from_utf8_lossy(&body).into_owned();
    match serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|json| spans_of(&json))
    {
        Some(spans) => {
            collected.spans.lock().expect("spans lock").extend(spans);
            (StatusCode::OK, "{}")
        }
        None => {
            collected.rejected.lock().expect("rejected lock").push(text);
            (StatusCode::BAD_REQUEST, "{}")
        }
    }
}

/// The spans of an `ExportTraceServiceRequest` in JSON.
fn spans_of(request: &Value) -> Option<Vec<Span>> {
    let mut spans = Vec::new();
    for resource_spans in request.get("resourceSpans")?.as_array()? {
        let resource = attributes(resource_spans.pointer("/resource/attributes"));
        for scope_spans in resource_spans.get("scopeSpans")?.as_array()? {
            for span in scope_spans.get("spans")?.as_array()? {
                let text = |key: &str| span.get(key).and_then(Value::as_str).unwrap_or("");
                spans.push(Span {
                    trace_id: text("traceId").to_owned(),
                    span_id: text("spanId").to_owned(),
                    parent_span_id: text("parentSpanId").to_owned(),
                    name: text("name").to_owned(),
                    kind: number(span.get("kind")) as i64,
                    status_code: number(span.pointer("/status/code")) as i64,
                    start_unix_nano: number(span.get("startTimeUnixNano")),
                    end_unix_nano: number(span.get("endTimeUnixNano")),
                    attributes: attributes(span.get("attributes")),
                    resource: resource.clone(),
                });
            }
        }
    }
    Some(spans)
}

/// A number that OTLP JSON may write as a number or a string (64-bit
/// values); 0 when absent.
fn number(value: Option<&Value>) -> u128 {
    match value {
        Some(Value::Number(n)) => n.as_u64().map_or(0, u128::from),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// OTLP `KeyValue`s as text: strings as they are, other values as JSON.
fn attributes(list: Option<&Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in list.and_then(Value::as_array).into_iter().flatten() {
        let Some(key) = pair.get("key").and_then(Value::as_str) else {
            continue;
        };
        let value = match pair.get("value") {
            Some(Value::Object(value)) => match value.iter().next() {
                Some((_, Value::String(s))) => s.clone(),
                Some((_, other)) => other.to_string(),
                None => String::new(),
            },
            _ => String::new(),
        };
        out.insert(key.to_owned(), value);
    }
    out
}
