//! PagerDuty Events API v2: `trigger` on `rotation_dead`, `certificate_expired` and
//! `certificate_expiring` within 2 days; `resolve` on `rotation_succeeded`. The dedup key
//! is per asset (`certfleet/<system_name>`), so one incident follows an asset until it is
//! ok again. The routing key is the secret. (PagerDuty cannot be reached from the test
//! machines; the tests use a local fixture that checks the documented event shape.)

use super::{ChannelError, Notifier, Sent, http};
use crate::notify::render::{self, Links};
use certfleet_proto::{EventKind, Notification, Severity};
use certfleet_shared::ConfigError;
use certfleet_shared::config::notify::PagerDutyConfig;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use std::time::Duration;

/// PagerDuty Events API v2.
pub struct PagerDuty {
    routing_key: SecretString,
    url: String,
    http: reqwest::Client,
}

impl PagerDuty {
    pub(super) fn new(
        key: &str,
        c: &PagerDutyConfig,
        env: &dyn Fn(&str) -> Option<String>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let routing_key = c.routing_key.read_with(&format!("{key}.routing_key"), env)?;
        Ok(Self {
            routing_key: SecretString::from(routing_key),
            url: c.events_url.clone(),
            http: http::client(key, c.ca_file.as_deref(), timeout)?,
        })
    }
}

/// What PagerDuty does with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Open (or update) the asset's incident.
    Trigger,
    /// Close it.
    Resolve,
}

/// The action for `n`, or `None` when PagerDuty has no business with it.
pub fn action(n: &Notification) -> Option<Action> {
    match n.event {
        EventKind::RotationDead | EventKind::CertificateExpired => Some(Action::Trigger),
        EventKind::CertificateExpiring if n.severity == Severity::Critical => Some(Action::Trigger),
        EventKind::RotationSucceeded if n.digest.is_none() => Some(Action::Resolve),
        _ => None,
    }
}

/// The per-asset dedup key (a digest has one per event kind).
pub fn dedup_key(n: &Notification) -> String {
    match (&n.asset, &n.digest) {
        (Some(a), None) => format!("certfleet/{}", a.system_name),
        _ => format!("certfleet/storm/{}", n.event),
    }
}

fn pd_severity(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Error => "error",
        Severity::Critical => "critical",
    }
}

/// The event body, without the routing key.
pub fn event(n: &Notification, links: &Links, action: Action) -> Value {
    if action == Action::Resolve {
        return json!({"event_action": "resolve", "dedup_key": dedup_key(n)});
    }
    let details: serde_json::Map<String, Value> =
        render::fields(n).into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect();
    let mut payload = json!({
        "summary": render::title(n).chars().take(1024).collect::<String>(),
        "source": n.asset.as_ref().map_or("certfleet".to_owned(), |a| a.system_name.clone()),
        "severity": pd_severity(n.severity),
        "timestamp": n.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "class": n.event.as_str(),
        "custom_details": details,
    });
    if let Some(a) = &n.asset {
        payload["component"] = json!(a.common_name);
        if let Some(dc) = &a.data_center {
            payload["group"] = json!(dc);
        }
    }
    json!({
        "event_action": "trigger",
        "dedup_key": dedup_key(n),
        "payload": payload,
        "client": "certfleet",
        "client_url": links.base(),
        "links": [{"href": links.primary(n), "text": "certfleet"}],
    })
}

#[async_trait::async_trait]
impl Notifier for PagerDuty {
    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    async fn send(&self, n: &Notification, links: &Links) -> Result<Sent, ChannelError> {
        let Some(action) = action(n) else {
            return Ok(Sent { detail: "not for this channel".into() });
        };
        let mut body = event(n, links, action);
        body["routing_key"] = json!(self.routing_key.expose_secret());
        http::send("PagerDuty", self.http.post(&self.url).json(&body)).await
    }
}
