//! DNS provider settings for ACME DNS-01: one entry per zone certfleet may write TXT records
//! in. The `provider` key selects the implementation; secrets are redacted from `Debug`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One writable zone and the provider that writes it. `provider` selects the variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum DnsProviderConfig {
    /// TSIG-signed RFC 2136 dynamic updates (BIND9, Knot, PowerDNS, ...).
    Rfc2136(Rfc2136Config),
    /// AWS Route 53 (credentials from the usual AWS chain).
    Route53(Route53Config),
    /// Cloudflare's HTTP API.
    Cloudflare(CloudflareConfig),
}

impl DnsProviderConfig {
    /// The zone this entry writes, as configured (for example `example.com`).
    pub fn zone(&self) -> &str {
        match self {
            Self::Rfc2136(c) => &c.zone,
            Self::Route53(c) => &c.zone,
            Self::Cloudflare(c) => &c.zone,
        }
    }
}

/// The TSIG MAC algorithm, spelled exactly as BIND spells it (`hmac-sha256`). The names are
/// mapped explicitly, so a misspelling fails to parse instead of falling back to HMAC-MD5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TsigAlgorithm {
    /// `hmac-sha256`.
    HmacSha256,
    /// `hmac-sha512`.
    HmacSha512,
}

/// Settings of one RFC 2136 server.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136Config {
    /// The primary nameserver that accepts updates, e.g. `127.0.0.1:53`.
    pub server: SocketAddr,
    /// The zone to update (the SOA owner), e.g. `example.com`.
    pub zone: String,
    /// The TSIG key name, exactly as configured on the server.
    pub key_name: String,
    /// The TSIG algorithm: `hmac-sha256` or `hmac-sha512`.
    pub algorithm: TsigAlgorithm,
    /// The TSIG secret, base64 (as in BIND's `key` statement). Never logged.
    pub secret: String,
    /// Budget for one update, UDP and TCP fallback together (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl fmt::Debug for Rfc2136Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136Config")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("key_name", &self.key_name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"****")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Settings of one Route 53 hosted zone. Credentials and region come from the usual AWS
/// chain (environment, profile, instance role); nothing secret is configured here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route53Config {
    /// The zone's name, e.g. `example.com`.
    pub zone: String,
    /// The hosted zone id; looked up by `zone` when absent.
    #[serde(default)]
    pub hosted_zone_id: Option<String>,
    /// AWS region override.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (for example a local moto server in tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Budget for one API call (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long to wait for a change to reach Route 53's `INSYNC` state (default 2m).
    #[serde(default = "default_propagation_timeout", with = "humantime_serde")]
    pub propagation_timeout: Duration,
}

fn default_propagation_timeout() -> Duration {
    Duration::from_secs(120)
}

/// Settings of one Cloudflare zone.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudflareConfig {
    /// The zone's name, e.g. `example.com`.
    pub zone: String,
    /// The zone id; looked up by `zone` when absent.
    #[serde(default)]
    pub zone_id: Option<String>,
    /// File holding the API token (scoped to `Zone.DNS:Edit`), mode 0600. Never logged.
    pub api_token_file: PathBuf,
    /// API base URL (default `https://api.cloudflare.com/client/v4`).
    #[serde(default = "default_cloudflare_api")]
    pub api_base: String,
    /// Budget for one API call (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_cloudflare_api() -> String {
    "https://api.cloudflare.com/client/v4".into()
}

impl fmt::Debug for CloudflareConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudflareConfig")
            .field("zone", &self.zone)
            .field("zone_id", &self.zone_id)
            .field("api_token_file", &self.api_token_file)
            .field("api_base", &self.api_base)
            .field("timeout", &self.timeout)
            .finish()
    }
}
