//! Certificate issuers: something that turns a device's CSR into a signed chain. Issuers
//! never see or make private keys of the devices.

pub mod acme;
pub mod ari;
pub mod dns;
pub mod internal;

use async_trait::async_trait;
use certfleet_proto::{CertificateInfo, RotationJob};
use certfleet_shared::config::IssuerConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A signed certificate ready to install.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Leaf first, then the chain up to (and including) the issuing root, PEM.
    pub chain_pem: String,
    /// The leaf, DER.
    pub leaf_der: Vec<u8>,
    /// Facts about the leaf.
    pub info: CertificateInfo,
}

/// An issuer failure, classified once by `outcome::JobError::classify`.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The CSR is unusable or asks for names the job does not: permanent.
    #[error("CSR refused: {0}")]
    BadCsr(String),
    /// The CA refused for good: permanent.
    #[error("CA rejected the request: {0}")]
    Rejected(String),
    /// A check before ordering failed (DNS delegation not in place): permanent, and the CA
    /// was never asked.
    #[error("pre-flight check failed, the CA was not asked: {0}")]
    Preflight(String),
    /// The CA asked us to come back later.
    #[error("CA rate limit: {detail}")]
    RateLimited {
        /// When to retry, as the CA said.
        retry_after: Option<Duration>,
        /// The CA's words.
        detail: String,
    },
    /// The CA could not be reached or failed for now: retried.
    #[error("CA unavailable: {0}")]
    Unavailable(String),
    /// The issuer itself is broken (unreadable CA key, ...): permanent.
    #[error("issuer failure: {0}")]
    Internal(String),
}

/// Something that signs CSRs.
#[async_trait]
pub trait Issuer: Send + Sync {
    /// Signs the DER `csr` for `job`, after checking it asks only for the job's names.
    async fn sign(&self, csr_der: &[u8], job: &RotationJob) -> Result<Issued, IssuerError>;
}

/// The issuers named in the config.
#[derive(Clone, Default)]
pub struct IssuerSet(BTreeMap<String, Arc<dyn Issuer>>);

impl IssuerSet {
    /// Builds every configured issuer (the internal CA creates its root on first use).
    pub async fn from_config(issuers: &BTreeMap<String, IssuerConfig>) -> Result<Self, IssuerError> {
        let mut set = BTreeMap::new();
        for (name, config) in issuers {
            let issuer: Arc<dyn Issuer> = match config {
                IssuerConfig::Internal(c) => Arc::new(internal::InternalCa::load_or_create(c).await?),
                IssuerConfig::Acme(c) => Arc::new(acme::AcmeIssuer::new(c).await.map_err(|e| acme_context(name, e))?),
            };
            set.insert(name.clone(), issuer);
        }
        Ok(Self(set))
    }

    /// The issuer called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Issuer>> {
        self.0.get(name)
    }
}

/// Names the issuer in a start-up error.
fn acme_context(name: &str, e: IssuerError) -> IssuerError {
    match e {
        IssuerError::Internal(m) => IssuerError::Internal(format!("issuer {name:?}: {m}")),
        other => other,
    }
}
