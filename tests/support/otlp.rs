//! An OTLP/HTTP trace receiver for the tests and benchmarks. No OpenTelemetry collector can
//! be installed here (it is neither in Debian's packages nor on PyPI as a runnable
//! server), so this one stands in: it accepts `POST /v1/traces` in the protobuf encoding
//! the real exporter sends, decodes it with `opentelemetry-proto`, and keeps the spans.

// The locks guard a push or a copy and are never held across an await, so the readers
// (`spans`, used from plain closures) need no runtime.
#![allow(clippy::disallowed_types)]

use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One received span, flattened.
#[derive(Debug, Clone)]
pub struct Span {
    /// The `service.name` of the process that sent it.
    pub service: String,
    /// Hex trace id.
    pub trace_id: String,
    /// Hex span id.
    pub span_id: String,
    /// Hex parent span id; empty for a root.
    pub parent: String,
    /// The span's name.
    pub name: String,
    /// Its attributes, as text.
    pub attributes: BTreeMap<String, String>,
    /// Whether its status is an error.
    pub error: bool,
}

impl Span {
    /// The attribute `key`, or "" when absent.
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// The receiver, listening on 127.0.0.1 until dropped.
pub struct OtlpSink {
    addr: std::net::SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    requests: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), text(kv.value.as_ref()))).collect()
}

fn flatten(req: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = rs.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    service: service.clone(),
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent: hex::encode(&s.parent_span_id),
                    name: s.name,
                    attributes: attributes(&s.attributes),
                    // opentelemetry.proto.trace.v1.Status.StatusCode: 2 is ERROR.
                    error: s.status.is_some_and(|st| st.code == 2),
                });
            }
        }
    }
    out
}

impl OtlpSink {
    /// Starts listening on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0u64));
        let (s, r) = (Arc::clone(&spans), Arc::clone(&requests));
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (spans, requests) = (Arc::clone(&s), Arc::clone(&r));
                async move {
                    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                    };
                    spans.lock().expect("spans").extend(flatten(req));
                    *requests.lock().expect("requests") += 1;
                    (axum::http::StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, spans, requests, task })
    }

    /// The base URL to give `[telemetry] otlp_endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("spans").clone()
    }

    /// How many export requests arrived.
    pub fn requests(&self) -> u64 {
        *self.requests.lock().expect("requests")
    }

    /// How many spans arrived since the last [`OtlpSink::clear`].
    pub fn spans_received(&self) -> usize {
        self.spans.lock().expect("spans").len()
    }

    /// Forgets the spans received (a benchmark's memory stays flat).
    pub fn clear(&self) {
        self.spans.lock().expect("spans").clear();
    }

    /// Waits until `check` finds what it wants in the spans received.
    pub async fn wait<T>(&self, timeout: Duration, what: &str, check: impl Fn(&[Span]) -> Option<T>) -> T {
        crate::wait_for(timeout, what, || {
            let found = check(&self.spans());
            async move { found }
        })
        .await
    }
}
