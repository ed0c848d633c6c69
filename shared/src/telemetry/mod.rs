//! Logging and tracing: log lines to stderr (text or JSON, with the trace and span ids),
//! spans exported over OTLP when `[telemetry]` asks for it, and the W3C `traceparent`
//! carried in every message so one rotation is one trace across processes.

mod export;
mod json;
mod propagate;

pub use propagate::{child_traceparent, new_traceparent, trace_id};

use crate::config::{LogFormat, TelemetryConfig};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry, filter};

/// Whether this process exports spans (set once, by [`init`]).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The installed exporter; dropping it (or [`Telemetry::shutdown`]) flushes the spans
/// still buffered, so a process that stops loses none.
#[must_use = "dropping it stops the span export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes the buffered spans and stops the exporter, off the async threads (the
    /// exporter's HTTP client is blocking, and bounded by its own timeout).
    pub async fn shutdown(mut self) {
        if let Some(p) = self.provider.take() {
            let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber: log lines filtered by `CERTFLEET_LOG` (or `RUST_LOG`,
/// default `info`) and, when `config` or the `OTEL_*` variables name a collector, certfleet's
/// own spans exported as `process` (the default `service.name`). Later calls install
/// nothing and export nothing. Fails only when the exporter cannot be built.
pub fn init(format: LogFormat, config: &TelemetryConfig, process: &str) -> Result<Telemetry, String> {
    let provider = export::provider(config, process)?;
    let filter = std::env::var("CERTFLEET_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(JsonFields::new())
            .event_format(json::JsonLines)
            .with_filter(filter)
            .boxed(),
    };
    // Only certfleet's own spans and events (every crate's target starts with
    // `certfleet`), at info and above: a dependency's internals (and the exporter's own
    // HTTP calls) never become spans. A static filter, so that the dependencies' debug and
    // trace callsites stay disabled once and for all instead of being asked on every call
    // (a dynamic one halved the throughput of the end-to-end benchmark).
    let spans = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("certfleet"))
            .with_error_events_to_status(true)
            .with_filter(filter::Targets::new().with_target("certfleet", tracing::Level::INFO))
    });
    if tracing_subscriber::registry().with(logs).with(spans).try_init().is_err() {
        if let Some(p) = provider {
            let _ = p.shutdown();
        }
        return Ok(Telemetry { provider: None });
    }
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry { provider })
}

/// Whether spans leave this process. Callers skip making spans that only the exporter
/// would read (one per published job) when it is off.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Makes `span` continue the trace of an incoming message's `traceparent`. Must be called
/// before `span` is first entered. Does nothing when spans are not exported, or when the
/// value is missing or invalid (the span then starts a trace of its own).
pub fn join(span: &Span, traceparent: Option<&str>) {
    if exporting()
        && let Some(cx) = traceparent.and_then(propagate::extract)
    {
        let _ = span.set_parent(cx);
    }
}

/// The `traceparent` for a message sent from within `span`: the span's own context when
/// spans are exported, else a fresh span id in the trace of `incoming` (or a new trace).
pub fn outgoing(span: &Span, incoming: Option<&str>) -> String {
    if exporting() {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            return propagate::format_span(sc);
        }
    }
    child_traceparent(incoming)
}

/// The trace id of `span`, when it is exported and sampled (a link to it would resolve).
pub fn sampled_trace_id(span: &Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
}
