//! RabbitMQ's management HTTP API, for the numbers AMQP cannot give: messages delivered
//! but not yet acknowledged, and publish / deliver rates. Optional (`amqp_management_url`);
//! without it the queue numbers are the AMQP ones only.

use crate::redact::redact_url;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// Why the management API gave no numbers.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    /// The URL does not parse, or is not http(s).
    #[error("invalid amqp_management_url {url}: must be an http:// or https:// URL")]
    BadUrl {
        /// Redacted URL.
        url: String,
    },
    /// The request failed or timed out.
    #[error("RabbitMQ management API at {url}: {reason}")]
    Request {
        /// Redacted URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// A rate the broker samples.
#[derive(Debug, Default, Deserialize)]
struct Rate {
    #[serde(default)]
    rate: f64,
}

#[derive(Debug, Default, Deserialize)]
struct MessageStats {
    #[serde(default)]
    publish_details: Rate,
    #[serde(default)]
    deliver_get_details: Rate,
}

#[derive(Debug, Deserialize)]
struct QueueInfo {
    name: String,
    #[serde(default)]
    messages_unacknowledged: u32,
    #[serde(default)]
    message_stats: Option<MessageStats>,
}

/// One queue's numbers from the management API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extra {
    /// Delivered, not yet acknowledged.
    pub unacked: u32,
    /// Messages published per second (broker's last sample).
    pub publish_rate: f64,
    /// Messages delivered per second (broker's last sample).
    pub deliver_rate: f64,
}

/// A client of the management API for the vhost of `amqp_url`.
#[derive(Debug, Clone)]
pub struct Management {
    http: reqwest::Client,
    queues_url: url::Url,
    user: String,
    password: String,
    redacted: String,
}

impl Management {
    /// The client for `management_url` (`http://127.0.0.1:15672`); the user, password and
    /// vhost come from `amqp_url` unless `management_url` carries its own credentials.
    pub fn new(management_url: &str, amqp_url: &str, timeout: Duration) -> Result<Self, ManagementError> {
        let redacted = redact_url(management_url);
        let bad = || ManagementError::BadUrl { url: redacted.clone() };
        let base = url::Url::parse(management_url).map_err(|_| bad())?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(bad());
        }
        let amqp = url::Url::parse(amqp_url).ok();
        let decode = |s: &str| percent_decode(s);
        let (user, password) = if base.username().is_empty() {
            amqp.as_ref().map_or(("guest".into(), "guest".into()), |a| {
                (decode(a.username()), decode(a.password().unwrap_or_default()))
            })
        } else {
            (decode(base.username()), decode(base.password().unwrap_or_default()))
        };
        let vhost = amqp.as_ref().map(|a| decode(a.path().trim_start_matches('/'))).filter(|v| !v.is_empty());
        let mut queues_url = base.clone();
        let _ = queues_url.set_username("");
        let _ = queues_url.set_password(None);
        queues_url.path_segments_mut().map_err(|()| bad())?.pop_if_empty().extend([
            "api",
            "queues",
            vhost.as_deref().unwrap_or("/"),
        ]);
        let http = crate::http::client(timeout, None)
            .map_err(|e| ManagementError::Request { url: redacted.clone(), reason: e.to_string() })?;
        Ok(Self { http, queues_url, user, password, redacted })
    }

    /// Every queue of the vhost with its extra numbers, by name.
    pub async fn queues(&self) -> Result<HashMap<String, Extra>, ManagementError> {
        let fail = |reason: String| ManagementError::Request { url: self.redacted.clone(), reason };
        let resp = self
            .http
            .get(self.queues_url.clone())
            .basic_auth(&self.user, Some(&self.password))
            .query(&[("columns", "name,messages_unacknowledged,message_stats")])
            .send()
            .await
            .map_err(|e| fail(if e.is_timeout() { "timed out".into() } else { "the request failed".into() }))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(fail(format!("answered {status}")));
        }
        let list: Vec<QueueInfo> = resp.json().await.map_err(|_| fail("answered with an unexpected body".into()))?;
        Ok(list
            .into_iter()
            .map(|q| {
                let stats = q.message_stats.unwrap_or_default();
                let extra = Extra {
                    unacked: q.messages_unacknowledged,
                    publish_rate: stats.publish_details.rate,
                    deliver_rate: stats.deliver_get_details.rate,
                };
                (q.name, extra)
            })
            .collect())
    }
}

/// `%2f` → `/` and friends, for user names, passwords and vhosts taken from URLs.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_vhost_come_from_the_amqp_url() {
        let m =
            Management::new("http://127.0.0.1:15672", "amqp://u%40x:p%2fw@h:5672/%2f", Duration::from_secs(1)).unwrap();
        assert_eq!((m.user.as_str(), m.password.as_str()), ("u@x", "p/w"));
        assert_eq!(m.queues_url.as_str(), "http://127.0.0.1:15672/api/queues/%2F");
        let m = Management::new("http://a:b@mq:15672/", "amqp://u:p@h/fleet", Duration::from_secs(1)).unwrap();
        assert_eq!((m.user.as_str(), m.queues_url.as_str()), ("a", "http://mq:15672/api/queues/fleet"));
        assert!(Management::new("ftp://mq", "amqp://h", Duration::from_secs(1)).is_err());
    }
}
