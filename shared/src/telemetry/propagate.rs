//! W3C `traceparent` values, carried in every message's headers so one rotation can be
//! followed across processes: made from a span's own context when spans are exported, and
//! otherwise with a fresh span id in the incoming trace.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rand::Rng;
use std::collections::HashMap;

struct Map<'a>(&'a mut HashMap<String, String>);

impl Injector for Map<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct Read<'a>(&'a HashMap<String, String>);

impl Extractor for Read<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

fn format_context(trace_id: TraceId) -> String {
    let span_id = SpanId::from_bytes(rand::rng().random::<[u8; 8]>());
    format_span(SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default()))
}

/// The `traceparent` of `span` (its sampled flag included).
pub(super) fn format_span(span: SpanContext) -> String {
    let cx = Context::new().with_remote_span_context(span);
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut Map(&mut carrier));
    carrier.remove("traceparent").unwrap_or_default()
}

/// A `traceparent` starting a new trace.
pub fn new_traceparent() -> String {
    format_context(TraceId::from_bytes(rand::rng().random::<[u8; 16]>()))
}

/// A `traceparent` continuing the trace of `parent` with a new span id, or a new trace if
/// `parent` is missing or invalid.
pub fn child_traceparent(parent: Option<&str>) -> String {
    match parent.and_then(trace_id_of) {
        Some(trace_id) => format_context(trace_id),
        None => new_traceparent(),
    }
}

/// The remote parent context in `traceparent`, if it is valid.
pub(super) fn extract(traceparent: &str) -> Option<Context> {
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    let cx = TraceContextPropagator::new().extract(&Read(&carrier));
    cx.span().span_context().is_valid().then_some(cx)
}

fn trace_id_of(traceparent: &str) -> Option<TraceId> {
    extract(traceparent).map(|cx| cx.span().span_context().trace_id())
}

/// The trace id (hex) of a `traceparent`, for log fields.
pub fn trace_id(traceparent: &str) -> Option<String> {
    trace_id_of(traceparent).map(|t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_w3c_and_children_keep_the_trace() {
        let parent = new_traceparent();
        let parts: Vec<&str> = parent.split('-').collect();
        assert_eq!(parts.len(), 4, "{parent}");
        assert_eq!((parts[0], parts[1].len(), parts[2].len(), parts[3]), ("00", 32, 16, "01"));
        let child = child_traceparent(Some(&parent));
        assert_eq!(trace_id(&child), trace_id(&parent));
        assert_ne!(child, parent);
        assert_ne!(trace_id(&child_traceparent(Some("garbage"))), trace_id(&parent));
    }
}
