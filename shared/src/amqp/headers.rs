//! Message properties and headers: how certfleet messages describe themselves.

use certfleet_proto::{ErrorClass, RotationJob};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// Job id header (present even when the body is unreadable).
pub const JOB_ID: &str = "x-certfleet-job-id";
/// Asset id header.
pub const ASSET_ID: &str = "x-certfleet-asset-id";
/// Asset name header.
pub const SYSTEM_NAME: &str = "x-certfleet-system-name";
/// Attempt header.
pub const ATTEMPT: &str = "x-certfleet-attempt";
/// Dead letters: the reason.
pub const DEAD_REASON: &str = "x-certfleet-reason";
/// Dead letters: the error class.
pub const DEAD_CLASS: &str = "x-certfleet-error-class";
/// Dead letters: what died (`notification`; absent for rotation jobs).
pub const DEAD_KIND: &str = "x-certfleet-kind";
/// Notifications: the channel.
pub const CHANNEL: &str = "x-certfleet-channel";
/// Content type of every certfleet body.
pub const CONTENT_TYPE: &str = "application/json";
/// The reply-to queue.
pub use super::topology::RESULTS_QUEUE as REPLY_TO;

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Properties of a job message: persistent, with ids, reply-to and trace context.
pub fn job_properties(job: &RotationJob, traceparent: &str) -> BasicProperties {
    let mut h = FieldTable::default();
    h.insert(ShortString::from(TRACEPARENT), long(traceparent));
    h.insert(ShortString::from(JOB_ID), long(&job.job_id.to_string()));
    h.insert(ShortString::from(ASSET_ID), AMQPValue::LongLongInt(job.asset_id.0));
    h.insert(ShortString::from(SYSTEM_NAME), long(&job.system_name));
    h.insert(ShortString::from(ATTEMPT), AMQPValue::LongLongInt(i64::from(job.attempt)));
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(job.job_id.to_string().into())
        .with_correlation_id(job.job_id.to_string().into())
        .with_reply_to(REPLY_TO.into())
        .with_headers(h)
}

/// Properties of a notification: persistent, with its id, channel and trace context.
pub fn notification_properties(n: &certfleet_proto::Notification, traceparent: &str) -> BasicProperties {
    let mut h = FieldTable::default();
    h.insert(ShortString::from(TRACEPARENT), long(traceparent));
    h.insert(ShortString::from(DEAD_KIND), long(certfleet_proto::DeadKind::Notification.as_str()));
    h.insert(ShortString::from(CHANNEL), long(&n.channel));
    h.insert(ShortString::from(ATTEMPT), AMQPValue::LongLongInt(i64::from(n.attempt)));
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(n.id.to_string().into())
        .with_headers(h)
}

/// Properties of a reply: persistent, correlated to the job, same trace.
pub fn result_properties(job_id: &str, traceparent: &str) -> BasicProperties {
    let mut h = FieldTable::default();
    h.insert(ShortString::from(TRACEPARENT), long(traceparent));
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(CONTENT_TYPE.into())
        .with_correlation_id(job_id.into())
        .with_headers(h)
}

/// Properties of a dead letter published by a worker: the original headers plus the reason,
/// the class and the attempt count.
pub fn dead_properties(
    original: &BasicProperties,
    class: ErrorClass,
    reason: &str,
    attempts: u32,
    traceparent: &str,
) -> BasicProperties {
    let mut h = original.headers().clone().unwrap_or_default();
    h.insert(ShortString::from(DEAD_REASON), long(reason));
    h.insert(ShortString::from(DEAD_CLASS), long(class.as_str()));
    h.insert(ShortString::from(ATTEMPT), AMQPValue::LongLongInt(i64::from(attempts)));
    h.insert(ShortString::from(TRACEPARENT), long(traceparent));
    original.clone().with_delivery_mode(2).with_headers(h)
}

/// A string header, if present.
pub fn get_str(props: &BasicProperties, key: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// An integer header, if present.
pub fn get_int(props: &BasicProperties, key: &str) -> Option<i64> {
    int_value(props.headers().as_ref()?.inner().get(key)?)
}

fn int_value(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::LongLongInt(i) => Some(*i),
        AMQPValue::LongInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortShortInt(i) => Some(i64::from(*i)),
        AMQPValue::LongUInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortUInt(i) => Some(i64::from(*i)),
        AMQPValue::Timestamp(i) => i64::try_from(*i).ok(),
        _ => None,
    }
}

/// The broker's own dead-lettering reason (`x-first-death-reason`), e.g. `delivery_limit`.
pub fn broker_death_reason(props: &BasicProperties) -> Option<String> {
    get_str(props, "x-first-death-reason")
}

/// Deliveries counted by a quorum queue (`x-delivery-count`).
pub fn delivery_count(props: &BasicProperties) -> Option<i64> {
    get_int(props, "x-delivery-count")
}

/// A header value as JSON (for people: strings as text, numbers as numbers, byte arrays
/// by size).
fn json_value(v: &AMQPValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        AMQPValue::Boolean(b) => J::Bool(*b),
        AMQPValue::ShortShortUInt(i) => J::from(*i),
        AMQPValue::Float(f) => J::from(*f),
        AMQPValue::Double(f) => J::from(*f),
        AMQPValue::DecimalValue(d) => J::String(format!("{}e-{}", d.value, d.scale)),
        AMQPValue::ShortString(s) => J::String(s.to_string()),
        AMQPValue::LongString(s) => J::String(s.to_string()),
        AMQPValue::FieldArray(a) => J::Array(a.as_slice().iter().map(json_value).collect()),
        AMQPValue::FieldTable(t) => table_json(t),
        AMQPValue::ByteArray(b) => J::String(format!("({} bytes)", b.as_slice().len())),
        AMQPValue::Void => J::Null,
        other => int_value(other).map_or(J::Null, J::from),
    }
}

fn table_json(t: &lapin::types::FieldTable) -> serde_json::Value {
    serde_json::Value::Object(t.inner().iter().map(|(k, v)| (k.to_string(), json_value(v))).collect())
}

/// A delivery's properties and headers as one JSON object, for the dead-letter detail page:
/// `{"properties": {...}, "headers": {...}}`.
pub fn describe(props: &BasicProperties) -> serde_json::Value {
    let mut p = serde_json::Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            p.insert(k.to_owned(), serde_json::Value::String(v));
        }
    };
    put("message_id", props.message_id().as_ref().map(ToString::to_string));
    put("correlation_id", props.correlation_id().as_ref().map(ToString::to_string));
    put("content_type", props.content_type().as_ref().map(ToString::to_string));
    put("reply_to", props.reply_to().as_ref().map(ToString::to_string));
    put("expiration", props.expiration().as_ref().map(ToString::to_string));
    put("delivery_mode", props.delivery_mode().map(|m| m.to_string()));
    let headers = props.headers().as_ref().map_or(serde_json::json!({}), table_json);
    serde_json::json!({"properties": p, "headers": headers})
}
