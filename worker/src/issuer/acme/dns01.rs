//! DNS-01 records for one order: where each challenge's TXT value goes (`_acme-challenge.
//! <name>`, or the CNAME target in the delegate zone), writing them, waiting until the
//! checking servers serve them, and always removing exactly our own values afterwards.

use crate::issuer::IssuerError;
use crate::issuer::dns::{DnsError, Zones, lookup, wait_for_txt};
use certfleet_shared::config::issuer::in_zone;
use futures_util::future::try_join_all;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// TTL of the challenge records: short, they live for seconds.
const TXT_TTL: u32 = 60;

/// `_acme-challenge.<name>` for an identifier, wildcard label stripped.
pub(crate) fn challenge_name(identifier: &str) -> String {
    format!("_acme-challenge.{}", identifier.trim_start_matches("*.").trim_end_matches('.'))
}

/// Maps a DNS failure: passing faults retry, refusals and bad settings are permanent.
pub(crate) fn dns_error(e: DnsError, what: &str) -> IssuerError {
    if let DnsError::RateLimited { retry_after, .. } = &e {
        return IssuerError::RateLimited { retry_after: *retry_after, detail: format!("{what}: {e}") };
    }
    if e.is_transient() {
        IssuerError::Unavailable(format!("{what}: {e}"))
    } else {
        IssuerError::Internal(format!("{what}: {e}"))
    }
}

/// For CNAME delegation: checks that every name's `_acme-challenge` is a CNAME into
/// `delegate_zone` and returns challenge name -> CNAME target.
pub(crate) async fn delegated_targets(
    names: &BTreeSet<String>,
    delegate_zone: &str,
    server: SocketAddr,
    timeout: Duration,
) -> Result<BTreeMap<String, String>, IssuerError> {
    let mut targets = BTreeMap::new();
    for name in names {
        let challenge = challenge_name(name);
        if targets.contains_key(&challenge) {
            continue;
        }
        let target = lookup::cname_target(server, &challenge, timeout)
            .await
            .map_err(|e| dns_error(e, &format!("CNAME check of {challenge}")))?;
        let target = match target {
            Some(t) if in_zone(&t, delegate_zone) => t.trim_end_matches('.').to_owned(),
            Some(t) => {
                return Err(IssuerError::Preflight(format!(
                    "{name}: {challenge} is a CNAME to {t}, which is outside the delegate zone {delegate_zone}"
                )));
            }
            None => {
                return Err(IssuerError::Preflight(format!(
                    "{name}: {challenge} has no CNAME into the delegate zone {delegate_zone} (asked {server}); \
                     add `{challenge}. CNAME {}.{delegate_zone}.`",
                    name.trim_start_matches("*.")
                )));
            }
        };
        targets.insert(challenge, target);
    }
    Ok(targets)
}

/// The TXT values written for one order. [`Published::remove_all`] withdraws them; if the
/// order is dropped midway (job timeout), `Drop` withdraws them in a background task.
pub(crate) struct Published {
    zones: Arc<Zones>,
    records: Vec<(String, String)>,
}

impl Published {
    pub(crate) fn new(zones: Arc<Zones>) -> Self {
        Self { zones, records: Vec::new() }
    }

    /// Writes `value` at `fqdn` through the provider of the longest matching zone.
    pub(crate) async fn publish(&mut self, fqdn: &str, value: &str) -> Result<(), IssuerError> {
        let zone = self
            .zones
            .for_name(fqdn)
            .ok_or_else(|| IssuerError::Internal(format!("no configured dns zone contains {fqdn}")))?;
        // Noted first: a timed-out update may still have been applied.
        self.records.push((fqdn.to_owned(), value.to_owned()));
        zone.provider.set_txt(fqdn, value, TXT_TTL).await.map_err(|e| dns_error(e, &format!("writing TXT {fqdn}")))
    }

    /// Waits until every value is served by its checking servers, within `timeout`.
    pub(crate) async fn wait_visible(
        &self,
        resolver: Option<SocketAddr>,
        timeout: Duration,
        poll: Duration,
    ) -> Result<(), IssuerError> {
        let mut waits = Vec::new();
        for (fqdn, value) in &self.records {
            let Some(zone) = self.zones.for_name(fqdn) else { continue };
            let servers = self
                .zones
                .check_servers(zone, resolver, timeout)
                .await
                .map_err(|e| dns_error(e, &format!("finding the nameservers of {}", zone.name)))?;
            for server in servers {
                waits.push(async move {
                    wait_for_txt(server, fqdn, value, timeout, poll).await.map_err(|e| match e {
                        DnsError::Timeout { .. } => IssuerError::Unavailable(format!(
                            "DNS propagation: TXT {fqdn} not visible at {server} within {timeout:?}"
                        )),
                        e => dns_error(e, &format!("checking TXT {fqdn} at {server}")),
                    })
                });
            }
        }
        try_join_all(waits).await.map(|_| ())
    }

    /// Removes every value written (only ours: other values at the same names stay).
    pub(crate) async fn remove_all(mut self) {
        let records = std::mem::take(&mut self.records);
        remove(&self.zones, records).await;
    }
}

async fn remove(zones: &Zones, records: Vec<(String, String)>) {
    for (fqdn, value) in records {
        let Some(zone) = zones.for_name(&fqdn) else { continue };
        match zone.provider.remove_txt(&fqdn, &value).await {
            Ok(()) => tracing::debug!(record = %fqdn, "removed challenge TXT value"),
            Err(e) => tracing::warn!(record = %fqdn, error = %e, "could not remove challenge TXT value"),
        }
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        if self.records.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.records);
        let zones = Arc::clone(&self.zones);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { remove(&zones, records).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_rate_limits_keep_their_retry_after() {
        let limited = DnsError::RateLimited { retry_after: Some(Duration::from_secs(7)), detail: "slow down".into() };
        assert!(matches!(
            dns_error(limited, "publishing TXT"),
            IssuerError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        let refused = DnsError::InvalidConfig("no such zone".into());
        assert!(matches!(dns_error(refused, "publishing TXT"), IssuerError::Internal(_)));
    }

    #[test]
    fn challenge_names_strip_wildcards() {
        assert_eq!(challenge_name("*.a.example.com"), "_acme-challenge.a.example.com");
        assert_eq!(challenge_name("a.example.com."), "_acme-challenge.a.example.com");
    }
}
