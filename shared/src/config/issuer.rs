//! Issuer settings: one named entry per CA, tagged by `kind` (`internal` or `acme`), and
//! their validation.

use super::ConfigError;
use super::dns::DnsProviderConfig;
use certfleet_proto::KeyAlgorithm;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One named issuer. The `kind` key selects the implementation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum IssuerConfig {
    /// certfleet's built-in CA, for short-lived internal certificates.
    Internal(InternalIssuerConfig),
    /// An ACME CA (RFC 8555) validated with DNS-01.
    Acme(Box<AcmeIssuerConfig>),
}

impl IssuerConfig {
    /// Per-issuer override of how long before expiry a certificate is renewed. `None` means
    /// one third of the certificate's lifetime.
    pub fn renew_before(&self) -> Option<Duration> {
        match self {
            Self::Internal(c) => c.renew_before,
            Self::Acme(c) => c.renew_before,
        }
    }

    /// Checks the values serde cannot check; `name` is the issuer's key in `issuers`.
    pub(super) fn validate(&self, name: &str) -> Result<(), ConfigError> {
        match self {
            Self::Internal(c) if c.validity < Duration::from_secs(60) => {
                Err(value("issuers.*.validity", format!("issuer {name:?}: validity must be at least 1m")))
            }
            Self::Internal(_) => Ok(()),
            Self::Acme(c) => c.validate(name),
        }
    }
}

fn value(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Value { key, reason }
}

/// The built-in CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InternalIssuerConfig {
    /// Directory holding the root certificate and key (`root/ca.crt`, `root/ca.key`, mode 0600).
    /// Created on first start. Every worker using this issuer must see the same directory.
    pub ca_dir: PathBuf,
    /// Common name of the root, used only when the root is created.
    pub root_common_name: String,
    /// Lifetime of issued certificates, for example `4d`.
    #[serde(with = "humantime_serde")]
    pub validity: Duration,
    /// Algorithm of the root's own key, used only when the root is created.
    pub root_key_algorithm: KeyAlgorithm,
    /// Renew this long before expiry instead of at one third of the lifetime.
    #[serde(default, with = "humantime_serde")]
    pub renew_before: Option<Duration>,
}

impl InternalIssuerConfig {
    /// The root certificate operators distribute to clients: `<ca_dir>/root/ca.crt`.
    pub fn root_cert_path(&self) -> PathBuf {
        self.ca_dir.join("root").join("ca.crt")
    }
}

impl Default for InternalIssuerConfig {
    fn default() -> Self {
        Self {
            ca_dir: PathBuf::from("certfleet-ca"),
            root_common_name: "certfleet internal root".into(),
            validity: Duration::from_secs(4 * 86_400),
            root_key_algorithm: KeyAlgorithm::EcdsaP256,
            renew_before: None,
        }
    }
}

/// An ACME CA (Let's Encrypt, ZeroSSL, Pebble, a private step-ca, ...). Challenges are
/// answered with DNS-01 through the providers in `dns`; the device's CSR is sent as is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeIssuerConfig {
    /// The CA's directory URL, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory_url: String,
    /// Contact e-mail of the account (without `mailto:`), e.g. `pki@example.com`.
    pub contact: String,
    /// PEM file of extra CA certificates trusted for the directory's HTTPS (for example
    /// Pebble's listener CA). Without it, the system's trust store is used.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// Certificate profile asked for in each new order (CAs that support profiles only).
    #[serde(default)]
    pub profile: Option<String>,
    /// External Account Binding key id, when the CA requires EAB (with `eab_hmac_key_file`).
    #[serde(default)]
    pub eab_kid: Option<String>,
    /// File holding the EAB HMAC key, base64url as the CA hands it out, mode 0600. Never logged.
    #[serde(default)]
    pub eab_hmac_key_file: Option<PathBuf>,
    /// Directory holding the ACME account, encrypted (`<sha256(directory|contact)>.json.enc`,
    /// mode 0600). Shared by every worker that uses this issuer, so they share one account.
    pub account_dir: PathBuf,
    /// File holding the 32-byte AES-256-GCM key (base64) that encrypts the account, mode 0600.
    /// Can also be set with `CERTFLEET_ISSUERS__<NAME>__ACCOUNT_KEY_ENCRYPTION_KEY_FILE`.
    pub account_key_encryption_key_file: PathBuf,
    /// A substring the issued leaf's issuer DN must contain (e.g. `Let's Encrypt`); a leaf
    /// from another issuer is refused.
    #[serde(default)]
    pub expected_issuer: Option<String>,
    /// Renew this long before expiry instead of at one third of the lifetime.
    #[serde(default, with = "humantime_serde")]
    pub renew_before: Option<Duration>,
    /// The zones certfleet may write `_acme-challenge` TXT records in, one entry per zone; the
    /// longest matching zone wins.
    #[serde(default)]
    pub dns: Vec<DnsProviderConfig>,
    /// CNAME delegation: every `_acme-challenge.<name>` must be a CNAME into this zone, and
    /// the TXT records are written at the CNAME targets (which `dns` must cover).
    #[serde(default)]
    pub delegate_zone: Option<String>,
    /// DNS server (`ip:port`) used for the CNAME checks and the propagation checks. Default:
    /// the writable zone's own server (RFC 2136) or its authoritative nameservers.
    #[serde(default)]
    pub resolver: Option<SocketAddr>,
    /// How long to wait for every TXT value to be visible before telling the CA (default 60s).
    #[serde(default = "default_propagation_timeout", with = "humantime_serde")]
    pub propagation_timeout: Duration,
    /// Interval between two propagation checks, and the first interval of order polling
    /// (default 50ms; order polling backs off to 1s).
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Budget of one HTTP request to the CA (default 15s).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Budget for the CA to validate the challenges and then to issue (default 90s each).
    #[serde(default = "default_order_timeout", with = "humantime_serde")]
    pub order_timeout: Duration,
    /// Orders one worker keeps open at this CA at once (default 16); further jobs wait for a
    /// slot. CAs cap pending authorizations per account, and Pebble 2.4 stalls for good when
    /// about 50 orders of one account are validated at once.
    #[serde(default = "default_max_concurrent_orders")]
    pub max_concurrent_orders: usize,
}

fn default_max_concurrent_orders() -> usize {
    16
}

fn default_propagation_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_poll_interval() -> Duration {
    Duration::from_millis(50)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_order_timeout() -> Duration {
    Duration::from_secs(90)
}

/// Whether `name` is `zone` or lies below it (case-insensitive, trailing dots ignored).
pub fn in_zone(name: &str, zone: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    name == zone || name.ends_with(&format!(".{zone}"))
}

impl AcmeIssuerConfig {
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| Err(value(key, format!("issuer {name:?}: {reason}")));
        if !self.directory_url.starts_with("https://") {
            return bad("issuers.*.directory_url", "must be an https:// URL");
        }
        let contact = self.contact.trim_start_matches("mailto:");
        if !contact.contains('@') || contact.contains(char::is_whitespace) {
            return bad("issuers.*.contact", "must be an e-mail address");
        }
        if self.eab_kid.is_some() != self.eab_hmac_key_file.is_some() {
            return bad("issuers.*.eab_kid", "eab_kid and eab_hmac_key_file go together");
        }
        if self.dns.is_empty() {
            return bad("issuers.*.dns", "at least one DNS zone is needed for DNS-01");
        }
        if let Some(zone) = &self.delegate_zone
            && !self.dns.iter().any(|d| in_zone(zone, d.zone()))
        {
            return bad("issuers.*.delegate_zone", &format!("no entry of dns covers {zone}"));
        }
        if self.propagation_timeout.is_zero() {
            return bad("issuers.*.propagation_timeout", "must be longer than zero");
        }
        if self.poll_interval.is_zero() || self.poll_interval > self.propagation_timeout {
            return bad("issuers.*.poll_interval", "must be longer than zero and at most propagation_timeout");
        }
        if self.max_concurrent_orders == 0 {
            return bad("issuers.*.max_concurrent_orders", "must be at least 1");
        }
        if self.request_timeout.is_zero() || self.order_timeout.is_zero() {
            return bad("issuers.*.request_timeout", "request_timeout and order_timeout must be longer than zero");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    const ACME: &str = r#"
[issuers.le]
kind = "acme"
directory_url = "https://127.0.0.1:14000/dir"
contact = "pki@example.com"
account_dir = "/var/lib/certfleet/acme"
account_key_encryption_key_file = "/etc/certfleet/acme.key"
delegate_zone = "acme-delegate.test"
propagation_timeout = "20s"
[[issuers.le.dns]]
provider = "rfc2136"
zone = "acme-delegate.test"
server = "127.0.0.1:53"
key_name = "k"
algorithm = "hmac-sha256"
secret = "c2VjcmV0"
"#;

    #[test]
    fn acme_issuer_parses_with_env_override() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "{}", ACME.replace("propagation_timeout", "renew_before = \"30d\"\npropagation_timeout"))
            .unwrap();
        let c = Config::load_from(
            Some(file.path()),
            env(&[("CERTFLEET_ISSUERS__LE__ACCOUNT_KEY_ENCRYPTION_KEY_FILE", "/run/secrets/123")]),
        )
        .unwrap()
        .config;
        let Some(IssuerConfig::Acme(a)) = c.issuers.get("le") else { panic!("not acme: {:?}", c.issuers) };
        assert_eq!(a.account_key_encryption_key_file, PathBuf::from("/run/secrets/123"));
        assert_eq!(a.propagation_timeout, Duration::from_secs(20));
        assert_eq!(a.poll_interval, Duration::from_millis(50));
        assert_eq!(a.dns.len(), 1);
        assert_eq!(c.issuers["le"].renew_before(), Some(Duration::from_secs(30 * 86_400)));
    }

    #[test]
    fn acme_issuer_bad_values_name_the_key() {
        let cases = [
            ("https://127.0.0.1:14000/dir", "http://ca/dir", "issuers.*.directory_url"),
            ("pki@example.com", "nobody", "issuers.*.contact"),
            ("delegate_zone = \"acme-delegate.test\"", "delegate_zone = \"elsewhere.test\"", "issuers.*.delegate_zone"),
            ("propagation_timeout = \"20s\"", "propagation_timeout = \"0s\"", "issuers.*.propagation_timeout"),
            ("delegate_zone", "eab_kid = \"kid\"\ndelegate_zone", "issuers.*.eab_kid"),
        ];
        for (from, to, key) in cases {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            write!(file, "{}", ACME.replace(from, to)).unwrap();
            let err = Config::load_from(Some(file.path()), Vec::new()).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("\"le\""), "{key}: {err}");
        }
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let no_dns =
            &ACME[..ACME.find("[[issuers.le.dns]]").unwrap()].replace("delegate_zone = \"acme-delegate.test\"", "");
        write!(file, "{no_dns}").unwrap();
        let err = Config::load_from(Some(file.path()), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("issuers.*.dns"), "{err}");
    }
}
