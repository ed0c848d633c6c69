//! The HTTP side shared by the Slack, webhook and PagerDuty channels: a rustls client
//! (system roots plus an optional CA file), and one classification of answers: 2xx is
//! sent, 408/429/5xx and network faults are retried (honouring `Retry-After`), other 4xx
//! are rejected. Error texts never carry the URL (a Slack URL is a secret) or the body.

use super::{ChannelError, Sent, setting};
use certfleet_shared::ConfigError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A client for one channel.
pub fn client(key: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let ca_key = format!("{key}.ca_file");
        let pem = std::fs::read(path).map_err(|e| setting(ca_key.clone(), format!("{}: {e}", path.display())))?;
        let mut added = 0;
        for der in
            <rustls::pki_types::CertificateDer<'static> as rustls::pki_types::pem::PemObject>::pem_slice_iter(&pem)
        {
            let der = der.map_err(|e| setting(ca_key.clone(), format!("{}: {e}", path.display())))?;
            roots.add(der).map_err(|e| setting(ca_key.clone(), format!("{}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(setting(ca_key, format!("{} holds no PEM certificate", path.display())));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setting(key.to_owned(), e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("certfleet/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| setting(key.to_owned(), e.without_url().to_string()))
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
