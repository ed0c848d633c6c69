//! The writable zones of one ACME issuer: a provider per configured zone, the choice of the
//! provider for a record (longest zone suffix), and where to check propagation.

use super::cloudflare::CloudflareProvider;
use super::lookup;
use super::rfc2136::Rfc2136Provider;
#[cfg(feature = "aws")]
use super::route53::Route53Provider;
use super::{DnsError, DnsProvider};
use crate::issuer::IssuerError;
use certfleet_shared::config::dns::DnsProviderConfig;
use certfleet_shared::config::issuer::in_zone;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Builds the provider for one configured zone. The single place that maps a
/// [`DnsProviderConfig`] variant to an implementation.
pub async fn build_provider(config: &DnsProviderConfig) -> Result<Arc<dyn DnsProvider>, IssuerError> {
    let zone_error = |e: DnsError| IssuerError::Internal(format!("dns zone {}: {e}", config.zone()));
    Ok(match config {
        DnsProviderConfig::Rfc2136(c) => Arc::new(Rfc2136Provider::new(c).map_err(zone_error)?),
        #[cfg(feature = "aws")]
        DnsProviderConfig::Route53(c) => Arc::new(Route53Provider::new(c).await.map_err(zone_error)?),
        #[cfg(not(feature = "aws"))]
        DnsProviderConfig::Route53(_) => {
            return Err(IssuerError::Internal(format!(
                "dns zone {}: the Route 53 provider is not in this build of the worker (built without the `aws` feature)",
                config.zone()
            )));
        }
        DnsProviderConfig::Cloudflare(c) => Arc::new(CloudflareProvider::new(c).await.map_err(zone_error)?),
    })
}

/// One writable zone.
pub struct Zone {
    /// The zone's name, lower case, without a trailing dot.
    pub name: String,
    /// Its provider.
    pub provider: Arc<dyn DnsProvider>,
    /// The server that takes the updates (RFC 2136), which is authoritative for the zone.
    primary: Option<SocketAddr>,
}

/// Every writable zone of an issuer.
pub struct Zones(Vec<Zone>);

impl Zones {
    /// Builds a provider for every entry.
    pub async fn from_config(configs: &[DnsProviderConfig]) -> Result<Self, IssuerError> {
        let mut zones = Vec::with_capacity(configs.len());
        for c in configs {
            let primary = match c {
                DnsProviderConfig::Rfc2136(r) => Some(r.server),
                _ => None,
            };
            let name = c.zone().trim_end_matches('.').to_ascii_lowercase();
            zones.push(Zone { name, provider: build_provider(c).await?, primary });
        }
        Ok(Self(zones))
    }

    /// The zone with the longest name that contains `fqdn`.
    pub fn for_name(&self, fqdn: &str) -> Option<&Zone> {
        self.0.iter().filter(|z| in_zone(fqdn, &z.name)).max_by_key(|z| z.name.len())
    }

    /// Where to check that records written in `zone` are visible: the configured resolver,
    /// else the zone's update server, else its authoritative nameservers.
    pub async fn check_servers(
        &self,
        zone: &Zone,
        resolver: Option<SocketAddr>,
        timeout: Duration,
    ) -> Result<Vec<SocketAddr>, DnsError> {
        if let Some(r) = resolver {
            return Ok(vec![r]);
        }
        if let Some(p) = zone.primary {
            return Ok(vec![p]);
        }
        lookup::authoritative_servers(lookup::system_resolver().await?, &zone.name, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc2136(zone: &str) -> DnsProviderConfig {
        serde_json::from_value(serde_json::json!({"provider": "rfc2136", "server": "127.0.0.1:53", "zone": zone,
            "key_name": "k", "algorithm": "hmac-sha256", "secret": "c2VjcmV0"}))
        .unwrap()
    }

    #[tokio::test]
    async fn longest_suffix_wins() {
        let zones = Zones::from_config(&[rfc2136("example.test"), rfc2136("sub.example.test.")]).await.unwrap();
        assert_eq!(zones.for_name("_acme-challenge.a.sub.example.test").unwrap().name, "sub.example.test");
        assert_eq!(zones.for_name("_acme-challenge.a.example.test.").unwrap().name, "example.test");
        assert_eq!(zones.for_name("_acme-challenge.sub.example.test").unwrap().name, "sub.example.test");
        assert!(zones.for_name("_acme-challenge.notexample.test").is_none());
    }

    #[tokio::test]
    async fn bad_provider_settings_are_clear_permanent_errors() {
        let cf: DnsProviderConfig = serde_json::from_value(serde_json::json!({"provider": "cloudflare",
            "zone": "example.test", "api_token_file": "/nonexistent/cf.token"}))
        .unwrap();
        let err = Zones::from_config(&[cf]).await.err().unwrap();
        assert!(matches!(&err, IssuerError::Internal(m) if m.contains("example.test")), "{err}");
    }
}
