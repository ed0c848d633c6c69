//! DNS provider settings for ACME DNS-01: one entry per zone certfleet may write TXT records
//! in. The `provider` key selects the implementation. Secrets come from a 0600 file or an
//! environment variable (an inline TSIG `secret` is still read, for old configs), are held
//! in `secrecy` types, and are redacted from `Debug`.

use super::notify::SecretSource;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
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
    /// The TSIG secret, base64 (as in BIND's `key` statement), inline. Prefer
    /// `secret_file` or `secret_env`: a config file is often readable by more people than
    /// the key should be. Give exactly one of the three. Never logged or serialized.
    #[serde(default, deserialize_with = "inline_secret", skip_serializing)]
    pub secret: Option<SecretString>,
    /// A file holding the base64 TSIG secret (surrounding whitespace is trimmed). It must
    /// have no group or other permission bits (mode 0600); this is checked when read.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the base64 TSIG secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Budget for one update, UDP and TCP fallback together (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn inline_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(SecretString::from))
}

impl Rfc2136Config {
    /// The TSIG secret (still base64), from exactly one of `secret`, `secret_file` (mode
    /// checked) or `secret_env`, with the lookup of environment variables given (so tests
    /// need not touch the process environment). The error names the setting and what is
    /// wrong (a missing file, mode 0644, an unset variable); never the value.
    pub fn tsig_secret_with(&self, env: impl Fn(&str) -> Option<String>) -> Result<SecretString, String> {
        let given = [self.secret.is_some(), self.secret_file.is_some(), self.secret_env.is_some()];
        match given.iter().filter(|g| **g).count() {
            0 => return Err("no TSIG secret: set secret_file (mode 0600) or secret_env".into()),
            1 => {}
            _ => return Err("give exactly one of secret, secret_file and secret_env".into()),
        }
        if let Some(inline) = &self.secret {
            return Ok(inline.clone());
        }
        let source = SecretSource { file: self.secret_file.clone(), env: self.secret_env.clone() };
        let key = if self.secret_file.is_some() { "secret_file" } else { "secret_env" };
        source.read_with(key, env).map(SecretString::from).map_err(|e| match e {
            super::ConfigError::Setting { key, reason } => format!("{key}: {reason}"),
            other => other.to_string(),
        })
    }

    /// [`Rfc2136Config::tsig_secret_with`] the process environment.
    pub fn tsig_secret(&self) -> Result<SecretString, String> {
        self.tsig_secret_with(|name| std::env::var(name).ok())
    }
}

impl fmt::Debug for Rfc2136Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136Config")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("key_name", &self.key_name)
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "****"))
            .field("secret_file", &self.secret_file)
            .field("secret_env", &self.secret_env)
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

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;
    use std::os::unix::fs::PermissionsExt as _;

    fn parse(extra: &str) -> Rfc2136Config {
        let text = format!(
            "server = \"127.0.0.1:53\"\nzone = \"example.test\"\nkey_name = \"k\"\nalgorithm = \"hmac-sha256\"\n{extra}"
        );
        use figment::providers::Format as _;
        figment::Figment::from(figment::providers::Toml::string(&text)).extract().unwrap()
    }

    #[test]
    fn the_tsig_secret_comes_from_a_private_file_or_env_and_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tsig.key");
        std::fs::write(&file, "c2VjcmV0LXRzaWc=\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = parse(&format!("secret_file = \"{}\"\n", file.display()));
        let err = c.tsig_secret_with(|_| None).unwrap_err();
        let named = err.contains("secret_file") && err.contains(&file.display().to_string());
        assert!(named && err.contains("0644"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(c.tsig_secret_with(|_| None).unwrap().expose_secret(), "c2VjcmV0LXRzaWc=");

        let c = parse("secret_env = \"TSIG\"\n");
        assert!(c.tsig_secret_with(|_| None).unwrap_err().contains("TSIG is not set"));
        assert_eq!(c.tsig_secret_with(|_| Some("Zm9v".into())).unwrap().expose_secret(), "Zm9v");

        let inline = parse("secret = \"aW5saW5l\"\n");
        assert_eq!(inline.tsig_secret_with(|_| None).unwrap().expose_secret(), "aW5saW5l");
        let shown = format!("{inline:?}");
        assert!(!shown.contains("aW5saW5l") && shown.contains("****"), "{shown}");
        assert!(!serde_json::to_string(&inline).unwrap().contains("aW5saW5l"), "never serialized");

        let none = parse("");
        assert!(none.tsig_secret_with(|_| None).unwrap_err().contains("no TSIG secret"));
        let both = parse("secret = \"x\"\nsecret_env = \"Y\"\n");
        assert!(both.tsig_secret_with(|_| None).unwrap_err().contains("exactly one"));
    }
}
