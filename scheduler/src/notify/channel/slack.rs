//! Slack, through an incoming webhook: a Block Kit message with Ottr's fields (hostname,
//! IPv4, certificate expiration, platform, OS version, CA), the error class, reason and
//! attempts, and a button to the asset's dashboard page. The webhook URL is the secret.
//! (Slack cannot be reached from the test machines; the tests use a local fixture that
//! checks the documented Block Kit shape.)

use super::{ChannelError, Notifier, Sent, http};
use crate::notify::render::{self, Links};
use certfleet_proto::Notification;
use certfleet_shared::ConfigError;
use certfleet_shared::config::notify::{SlackConfig, check_url};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use std::time::Duration;

/// Section fields per block (Block Kit's limit).
const FIELDS_PER_SECTION: usize = 10;

/// A Slack incoming webhook.
pub struct Slack {
    url: SecretString,
    http: reqwest::Client,
}

impl Slack {
    pub(super) fn new(
        key: &str,
        c: &SlackConfig,
        env: &dyn Fn(&str) -> Option<String>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let url_key = format!("{key}.webhook_url");
        let url = c.webhook_url.read_with(&url_key, env)?;
        // The URL is a secret: the error names the key, never the value.
        check_url(&url_key, &url).map_err(|_| ConfigError::Setting {
            key: url_key.clone(),
            reason: "the secret is not an https:// URL".into(),
        })?;
        Ok(Self { url: SecretString::from(url), http: http::client(key, c.ca_file.as_deref(), timeout)? })
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_owned() } else { format!("{}…", s.chars().take(max - 1).collect::<String>()) }
}

/// The Block Kit payload.
pub fn payload(n: &Notification, links: &Links) -> Value {
    let title = render::title(n);
    let mut blocks = vec![json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&title, 150)}})];
    let fields = render::fields(n);
    let (short, long): (Vec<_>, Vec<_>) =
        fields.into_iter().partition(|(k, _)| !matches!(*k, "Reason" | "Top reasons" | "First assets"));
    for chunk in short.chunks(FIELDS_PER_SECTION) {
        let f: Vec<Value> = chunk
            .iter()
            .map(|(k, v)| json!({"type": "mrkdwn", "text": truncate(&format!("*{k}*\n{v}"), 2000)}))
            .collect();
        blocks.push(json!({"type": "section", "fields": f}));
    }
    for (k, v) in long {
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&format!("*{k}*\n{v}"), 3000)}}),
        );
    }
    let (label, url) = match n.digest {
        Some(_) => ("Open the dead letters", links.dlq(n)),
        None => ("Open in certfleet", links.primary(n)),
    };
    blocks.push(json!({"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url}
    ]}));
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("certfleet · {} · {} · {}", n.event, n.severity, n.id)}
    ]}));
    json!({"text": title, "blocks": blocks})
}

#[async_trait::async_trait]
impl Notifier for Slack {
    fn kind(&self) -> &'static str {
        "slack"
    }

    async fn send(&self, n: &Notification, links: &Links) -> Result<Sent, ChannelError> {
        let req = self.http.post(self.url.expose_secret()).json(&payload(n, links));
        http::send("Slack", req).await
    }
}
