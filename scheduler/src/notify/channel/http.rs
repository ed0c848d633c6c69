//! The HTTP side shared by the Slack, webhook and PagerDuty channels: a rustls client
//! (system roots plus an optional CA file), and one classification of answers: 2xx is
//! sent, 408/429/5xx and network faults are retried (honouring `Retry-After`), other 4xx
//! are rejected. Error texts never carry the URL (a Slack URL is a secret) or the body.

use super::{ChannelError, Sent, setting};
use certfleet_shared::ConfigError;
use std::path::Path;
use std::time::Duration;

/// A client for one channel (the shared HTTPS client: no redirects, so a URL that is a
/// secret is never sent on to another host).
pub fn client(key: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    let pem = match ca_file {
        Some(path) => Some(
            std::fs::read(path).map_err(|e| setting(format!("{key}.ca_file"), format!("{}: {e}", path.display())))?,
        ),
        None => None,
    };
    certfleet_shared::http::client(timeout, pem.as_deref()).map_err(|e| match (ca_file, e) {
        (Some(path), certfleet_shared::http::HttpClientError::Roots(why)) => {
            setting(format!("{key}.ca_file"), format!("{}: {why}", path.display()))
        }
        (_, other) => setting(key.to_owned(), other.to_string()),
    })
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok()
}

/// Sends `req` and classifies the answer. `what` names the service in messages.
pub async fn send(what: &str, req: reqwest::RequestBuilder) -> Result<Sent, ChannelError> {
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let e = e.without_url();
            let mut cause = format!("{what}: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                cause.push_str(&format!(": {s}"));
                source = s.source();
            }
            return Err(ChannelError::Retry { after: None, cause });
        }
    };
    let status = resp.status();
    let after = retry_after(resp.headers());
    if status.is_success() {
        return Ok(Sent { detail: format!("HTTP {}", status.as_u16()) });
    }
    // A short excerpt of the answer helps people; it never holds our secrets.
    let body = resp.text().await.unwrap_or_default();
    let excerpt: String = body.chars().take(200).collect();
    let cause = format!(
        "{what} answered HTTP {}{}",
        status.as_u16(),
        if excerpt.is_empty() { String::new() } else { format!(": {excerpt}") }
    );
    if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
        Err(ChannelError::Retry { after, cause })
    } else {
        Err(ChannelError::Rejected(cause))
    }
}
