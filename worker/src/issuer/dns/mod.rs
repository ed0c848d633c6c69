//! DNS providers for ACME DNS-01: something that publishes and withdraws the
//! `_acme-challenge` TXT values, plus a bounded wait until a nameserver serves them.
//!
//! Adding a provider: one module here implementing [`DnsProvider`]. Providers only ever touch
//! the single value they were given, so concurrent challenges for one name never clobber
//! each other.

pub mod cloudflare;
pub mod lookup;
pub mod rfc2136;
#[cfg(feature = "aws")]
pub mod route53;
mod transport;
pub mod zones;

pub use zones::{Zone, Zones, build_provider};
mod txt;

use async_trait::async_trait;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// A DNS provider failure, classified once by [`DnsError::is_transient`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The server refused for good (NOTAUTH, REFUSED, BADKEY, BADSIG, NOTZONE...): permanent.
    #[error("DNS server refused {name}: {rcode}")]
    Refused {
        /// The response code, with the TSIG error when there is one (e.g. `NOTAUTH/BADSIG`).
        rcode: String,
        /// The name the request was about.
        name: String,
    },
    /// The server failed for now (SERVFAIL): retried.
    #[error("DNS server failed for {name}: {rcode}")]
    ServerFailure {
        /// The response code.
        rcode: String,
        /// The name the request was about.
        name: String,
    },
    /// No answer in time: retried.
    #[error("DNS {op} timed out after {after:?}")]
    Timeout {
        /// What was attempted.
        op: &'static str,
        /// The budget.
        after: Duration,
    },
    /// The server could not be reached (connection refused, network error): retried.
    #[error("DNS server unreachable: {0}")]
    Unreachable(String),
    /// The answer was malformed or its TSIG did not verify: retried (updates are idempotent).
    #[error("bad DNS answer: {0}")]
    Protocol(String),
    /// The provider's settings cannot work (bad key, name outside the zone): permanent.
    #[error("invalid DNS provider config: {0}")]
    InvalidConfig(String),
    /// The provider's API asked us to slow down (HTTP 429, throttling): retried, after
    /// `retry_after` when the API said when.
    #[error("DNS provider rate limit: {detail}")]
    RateLimited {
        /// The API's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// What the API said.
        detail: String,
    },
}

impl DnsError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::ServerFailure { .. }
            | Self::Timeout { .. }
            | Self::Unreachable(_)
            | Self::Protocol(_)
            | Self::RateLimited { .. } => true,
            Self::Refused { .. } | Self::InvalidConfig(_) => false,
        }
    }

    /// When the provider asked to be retried, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Maps a non-success response code for `name` to an error (`tsig` is the TSIG error).
    pub(crate) fn from_rcode(rcode: ResponseCode, tsig: Option<String>, name: &Name) -> Self {
        let code = match tsig {
            Some(t) => format!("{rcode:?}/{t}").to_uppercase(),
            None => format!("{rcode:?}").to_uppercase(),
        };
        let name = name.to_string();
        match rcode {
            ResponseCode::ServFail => Self::ServerFailure { rcode: code, name },
            _ => Self::Refused { rcode: code, name },
        }
    }
}

/// Publishes and withdraws ACME challenge TXT values.
#[async_trait]
pub trait DnsProvider: Send + Sync {
    /// Adds `value` to the TXT RRset at `fqdn` (other values stay).
    async fn set_txt(&self, fqdn: &str, value: &str, ttl: u32) -> Result<(), DnsError>;
    /// Removes only `value` from the TXT RRset at `fqdn`; absent values are not an error.
    async fn remove_txt(&self, fqdn: &str, value: &str) -> Result<(), DnsError>;
}

/// Parses a user-supplied name as a fully qualified name.
pub(crate) fn parse_fqdn(name: &str) -> Result<Name, DnsError> {
    let mut parsed =
        Name::from_ascii(name).map_err(|e| DnsError::InvalidConfig(format!("bad DNS name {name:?}: {e}")))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// Polls `resolver` directly until the TXT RRset at `fqdn` contains `value`.
pub async fn wait_for_txt(
    resolver: SocketAddr,
    fqdn: &str,
    value: &str,
    timeout: Duration,
    poll_interval: Duration,
) -> Result<(), DnsError> {
    wait_txt(resolver, fqdn, value, true, timeout, poll_interval).await
}

/// Polls `resolver` directly until the TXT RRset at `fqdn` no longer contains `value`.
pub async fn wait_until_absent(
    resolver: SocketAddr,
    fqdn: &str,
    value: &str,
    timeout: Duration,
    poll_interval: Duration,
) -> Result<(), DnsError> {
    wait_txt(resolver, fqdn, value, false, timeout, poll_interval).await
}

async fn wait_txt(
    resolver: SocketAddr,
    fqdn: &str,
    value: &str,
    present: bool,
    timeout: Duration,
    poll_interval: Duration,
) -> Result<(), DnsError> {
    let name = parse_fqdn(fqdn)?;
    let op = if present { "wait for TXT" } else { "wait for TXT removal" };
    let deadline = Instant::now() + timeout;
    loop {
        match txt_values(resolver, &name, deadline, op, timeout).await {
            Ok(values) if values.iter().any(|v| v == value) == present => return Ok(()),
            Ok(_) => {}
            Err(e) if e.is_transient() => tracing::debug!(%resolver, %name, error = %e, "TXT poll failed"),
            Err(e) => return Err(e),
        }
        if Instant::now() + poll_interval >= deadline {
            return Err(DnsError::Timeout { op, after: timeout });
        }
        tokio::time::sleep(poll_interval).await;
    }
}

/// The TXT values (strings of one record joined) `server` answers for `name`.
pub(crate) async fn txt_values(
    server: SocketAddr,
    name: &Name,
    deadline: Instant,
    op: &'static str,
    after: Duration,
) -> Result<Vec<String>, DnsError> {
    let mut query = Message::query();
    query.add_query(Query::query(name.clone(), RecordType::TXT));
    query.metadata.recursion_desired = true;
    let bytes = query.to_vec().map_err(|e| DnsError::Protocol(format!("cannot encode query: {e}")))?;
    let answer = transport::exchange(server, &bytes, query.metadata.id, deadline, op, after).await?;
    let rcode = answer.message.metadata.response_code;
    if !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        return Err(DnsError::from_rcode(rcode, None, name));
    }
    Ok(answer
        .message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(txt.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect::<String>()),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let name = parse_fqdn("a.example").unwrap();
        assert!(!DnsError::from_rcode(ResponseCode::NotAuth, Some("BadSig".into()), &name).is_transient());
        assert!(!DnsError::from_rcode(ResponseCode::Refused, None, &name).is_transient());
        assert!(DnsError::from_rcode(ResponseCode::ServFail, None, &name).is_transient());
        assert!(DnsError::Timeout { op: "x", after: Duration::from_secs(1) }.is_transient());
        assert!(!DnsError::InvalidConfig("x".into()).is_transient());
        let e = DnsError::from_rcode(ResponseCode::NotAuth, Some("BadSig".into()), &name);
        assert_eq!(e.to_string(), "DNS server refused a.example.: NOTAUTH/BADSIG");
    }
}
