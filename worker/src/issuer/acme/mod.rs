//! `acme` issuer: gets the device's CSR signed by an ACME CA (RFC 8555), answering DNS-01
//! challenges through the configured DNS providers. It never makes a key for a device: the
//! order is finalized with the CSR the device produced.
//!
//! Steps of [`AcmeIssuer::sign`]: check the CSR against the job; with CNAME delegation,
//! check every `_acme-challenge` CNAME; create the order; write the TXT values; wait until
//! they are served; tell the CA; poll; finalize; check the leaf. The TXT values are removed
//! on every path.

mod account;
mod dns01;
pub mod errors;
mod http;
mod order;
mod verify;

use super::dns::{Zones, lookup};
use super::{Issued, Issuer, IssuerError};
use async_trait::async_trait;
use base64::Engine as _;
use certfleet_proto::RotationJob;
use certfleet_shared::config::AcmeIssuerConfig;
use dns01::{Published, challenge_name, dns_error};
use instant_acme::{Account, ExternalAccountKey, Identifier};
use order::Limits;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::OnceCell;
use tracing::Instrument as _;

pub use account::read_secret_file;

/// An ACME CA with its account and writable zones.
pub struct AcmeIssuer {
    config: AcmeIssuerConfig,
    zones: Arc<Zones>,
    http: http::AcmeHttp,
    sealer: account::Sealer,
    eab: Option<ExternalAccountKey>,
    /// Registered or loaded on first use, so a worker starts while the CA is down.
    account: OnceCell<Account>,
    /// Slots for orders open at once (`max_concurrent_orders`).
    order_slots: tokio::sync::Semaphore,
}

impl AcmeIssuer {
    /// Checks the settings and reads the key files; the account is loaded on first use.
    pub async fn new(config: &AcmeIssuerConfig) -> Result<Self, IssuerError> {
        let zones = Arc::new(Zones::from_config(&config.dns).await?);
        let http = http::AcmeHttp::new(config.ca_bundle.as_deref(), config.request_timeout).await?;
        let sealer = account::Sealer::load(&config.account_key_encryption_key_file).await?;
        let eab = match (&config.eab_kid, &config.eab_hmac_key_file) {
            (Some(kid), Some(file)) => {
                let text = read_secret_file(file, "eab_hmac_key_file").await?;
                let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(text.trim_end_matches('=').as_bytes())
                    .map_err(|_| {
                        IssuerError::Internal(format!("eab_hmac_key_file {}: not base64url", file.display()))
                    })?;
                Some(ExternalAccountKey::new(kid.clone(), &key))
            }
            _ => None,
        };
        let order_slots = tokio::sync::Semaphore::new(config.max_concurrent_orders);
        Ok(Self { config: config.clone(), zones, http, sealer, eab, account: OnceCell::new(), order_slots })
    }

    /// The ACME account (loaded from `account_dir` or registered on the first call).
    pub async fn account(&self) -> Result<&Account, IssuerError> {
        self.account
            .get_or_try_init(|| {
                http::with_throttle(account::load_or_create(
                    &self.config,
                    &self.sealer,
                    &self.http,
                    self.eab.as_ref(),
                    self.config.request_timeout,
                ))
            })
            .await
    }

    fn limits(&self) -> Limits {
        Limits {
            request: self.config.request_timeout,
            order: self.config.order_timeout,
            first_poll: (self.config.poll_interval * 2).max(std::time::Duration::from_millis(100)),
        }
    }

    /// `_acme-challenge` name -> where its TXT value is written.
    async fn record_names(
        &self,
        names: &std::collections::BTreeSet<String>,
    ) -> Result<BTreeMap<String, String>, IssuerError> {
        let Some(delegate) = &self.config.delegate_zone else {
            return Ok(names.iter().map(|n| (challenge_name(n), challenge_name(n))).collect());
        };
        let server = match self.config.resolver {
            Some(r) => r,
            None => lookup::system_resolver().await.map_err(|e| dns_error(e, "CNAME check"))?,
        };
        dns01::delegated_targets(names, delegate, server, self.config.request_timeout).await
    }

    /// The order itself; every TXT value written is noted in `published`.
    async fn run_order(
        &self,
        csr: &verify::CheckedCsr,
        csr_der: &[u8],
        replaces: Option<&str>,
        records: &BTreeMap<String, String>,
        published: &mut Published,
    ) -> Result<String, IssuerError> {
        let limits = self.limits();
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = csr.names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let profile = self.config.profile.as_deref();
        let mut order = order::call(
            limits.request,
            http::Action::NewOrder,
            "creating the order",
            order::new_order(account, &identifiers, profile, replaces),
        )
        .await?;
        let pending = order::pending_challenges(&mut order, limits.request).await?;
        for p in &pending {
            let name = challenge_name(&p.identifier);
            let record = records.get(&name).unwrap_or(&name);
            published.publish(record, &p.value).await?;
        }
        let propagating = std::time::Instant::now();
        published
            .wait_visible(self.config.resolver, self.config.propagation_timeout, self.config.poll_interval)
            .instrument(tracing::info_span!("dns-01 propagation", records = pending.len()))
            .await?;
        certfleet_shared::metrics::histogram!(certfleet_shared::metrics::Metric::DnsPropagation.name())
            .record(propagating.elapsed().as_secs_f64());
        order::set_ready(&mut order, limits.request).await?;
        order::wait_ready(&mut order, limits).await?;
        order::finalize(&mut order, csr_der, limits).await
    }
}

#[async_trait]
impl Issuer for AcmeIssuer {
    async fn sign(&self, csr_der: &[u8], job: &RotationJob) -> Result<Issued, IssuerError> {
        let csr = verify::check_csr(csr_der, job)?;
        let records = self.record_names(&csr.names).await?;
        let _slot = self
            .order_slots
            .acquire()
            .await
            .map_err(|_| IssuerError::Internal("the issuer's order slots are closed".into()))?;
        let mut published = Published::new(Arc::clone(&self.zones));
        let order = tracing::info_span!("acme order", identifiers = csr.names.len());
        let chain =
            http::with_throttle(self.run_order(&csr, csr_der, job.replaces.as_deref(), &records, &mut published))
                .instrument(order)
                .await;
        published.remove_all().await;
        let chain = chain?;
        let mut issued = verify::check_issued(chain, &csr, self.config.expected_issuer.as_deref())?;
        // RFC 9773: the CA's suggested renewal window, when it offers one (never fails the job).
        issued.info.ari_cert_id = super::ari::cert_id(&issued.leaf_der).ok();
        if let Ok(account) = self.account().await {
            issued.info.renewal_window =
                super::ari::renewal_window(account, &issued.leaf_der, self.config.request_timeout).await;
        }
        tracing::info!(
            asset = %job.system_name, serial = %issued.info.serial, not_after = %issued.info.not_after,
            "ACME certificate issued"
        );
        Ok(issued)
    }
}
