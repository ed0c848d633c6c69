//! Notification channels: one [`Notifier`] trait, one module per kind. A channel turns a
//! [`Notification`] into one message on its service and says how it went; it never sees
//! the broker, and its secrets (read once at start from 0600 files or the environment)
//! stay inside it, wrapped in `secrecy` types.

mod email;
mod http;
mod pagerduty;
mod slack;
mod webhook;

pub use webhook::{SIGNATURE_HEADER, sign};

use super::render::Links;
use certfleet_proto::Notification;
use certfleet_shared::ConfigError;
use certfleet_shared::config::notify::{ChannelConfig, NotifyConfig};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How a delivery went wrong.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChannelError {
    /// A passing fault (timeout, refused connection, 429, 5xx): try again, after `after`
    /// if the service said when (`Retry-After`).
    #[error("{cause}")]
    Retry {
        /// The service's Retry-After.
        after: Option<Duration>,
        /// What went wrong (never a secret).
        cause: String,
    },
    /// The service refused the message for good (4xx other than 408/429, a bad recipient).
    #[error("{0}")]
    Rejected(String),
}

/// A delivery that reached the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// What the service answered, for people (`HTTP 200`, `SMTP 250`, `not for this channel`).
    pub detail: String,
}

/// One channel.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// The channel's kind, for logs (`slack`, `webhook`, `email`, `pagerduty`).
    fn kind(&self) -> &'static str;
    /// Delivers `n` once.
    async fn send(&self, n: &Notification, links: &Links) -> Result<Sent, ChannelError>;
}

/// Every configured channel by name.
#[derive(Clone, Default)]
pub struct Channels {
    by_name: BTreeMap<String, Arc<dyn Notifier>>,
    pagerduty: HashSet<String>,
}

impl Channels {
    /// Builds every channel of `config`, reading their secrets. Any problem (a secret file
    /// readable by others, a variable not set, an unreadable CA file) refuses the whole
    /// config and names the key.
    pub fn build(config: &NotifyConfig) -> Result<Self, ConfigError> {
        Self::build_with(config, &|name| std::env::var(name).ok())
    }

    /// Like [`Channels::build`] with the environment given as a lookup.
    pub fn build_with(config: &NotifyConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut out = Self::default();
        for (name, ch) in &config.channels {
            let key = format!("notify.channels.{name}");
            let timeout = config.request_timeout;
            let notifier: Arc<dyn Notifier> = match ch {
                ChannelConfig::Slack(c) => Arc::new(slack::Slack::new(&key, c, env, timeout)?),
                ChannelConfig::Webhook(c) => Arc::new(webhook::Webhook::new(&key, c, env, timeout)?),
                ChannelConfig::Email(c) => Arc::new(email::Email::new(&key, c, env, timeout)?),
                ChannelConfig::Pagerduty(c) => {
                    out.pagerduty.insert(name.clone());
                    Arc::new(pagerduty::PagerDuty::new(&key, c, env, timeout)?)
                }
            };
            out.by_name.insert(name.clone(), notifier);
        }
        Ok(out)
    }

    /// The channel called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Notifier>> {
        self.by_name.get(name)
    }

    /// Names of the PagerDuty channels (they also hear of recoveries).
    pub fn pagerduty(&self) -> &HashSet<String> {
        &self.pagerduty
    }

    /// Whether no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Channel names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// Names of PagerDuty channels in `config`, without reading any secret.
pub fn pagerduty_names(config: &NotifyConfig) -> HashSet<String> {
    config.channels.iter().filter(|(_, c)| matches!(c, ChannelConfig::Pagerduty(_))).map(|(n, _)| n.clone()).collect()
}

fn setting(key: String, reason: impl Into<String>) -> ConfigError {
    ConfigError::Setting { key, reason: reason.into() }
}
