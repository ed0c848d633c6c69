//! `internal` issuer: certfleet's built-in CA for short-lived certificates (rcgen).
//!
//! The root is created on first start in `<ca_dir>/root/` (`ca.crt`, and `ca.key` with mode
//! 0600). Several processes may start at once: each builds a candidate in a private
//! temporary directory and renames it into place; rename of a directory onto an existing
//! non-empty one fails, so exactly one candidate wins and the others load it.

use super::{Issued, Issuer, IssuerError};
use crate::certinfo;
use async_trait::async_trait;
use certfleet_proto::RotationJob;
use certfleet_shared::config::InternalIssuerConfig;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer as RcIssuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::collections::BTreeSet;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;

/// The built-in CA.
pub struct InternalCa {
    issuer: RcIssuer<'static, KeyPair>,
    root_pem: String,
    validity: Duration,
}

fn internal(what: &str, path: &Path, e: impl std::fmt::Display) -> IssuerError {
    IssuerError::Internal(format!("{what} {}: {e}", path.display()))
}

async fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IssuerError> {
    crate::fsutil::write_durably(path, bytes, mode, true).await.map_err(|e| internal(e.op, path, e.source))
}

fn root_params(config: &InternalIssuerConfig) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, config.root_common_name.as_str());
    dn.push(DnType::OrganizationName, "certfleet");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = false;
    params
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::rng().random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte to strip
    SerialNumber::from_slice(&bytes)
}

/// The internal CA's root as operators see it (`certfleet ca show`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RootInfo {
    /// Where it is: `<ca_dir>/root/ca.crt`.
    pub path: PathBuf,
    /// Its subject.
    pub subject: String,
    /// Its notAfter.
    pub not_after: chrono::DateTime<chrono::Utc>,
    /// SHA-256 of its DER, hex.
    pub sha256_fingerprint: String,
    /// The certificate, PEM.
    pub pem: String,
}

impl RootInfo {
    /// The fingerprint as `openssl x509 -fingerprint -sha256` prints it (`AB:CD:...`).
    pub fn fingerprint_colons(&self) -> String {
        let hex = self.sha256_fingerprint.to_ascii_uppercase();
        let pairs: Vec<&str> = hex.as_bytes().chunks(2).filter_map(|c| std::str::from_utf8(c).ok()).collect();
        pairs.join(":")
    }
}

/// Reads the root of the internal CA configured by `config`, without creating it: a
/// missing root says where it will be and that the first worker creates it.
pub async fn describe_root(config: &InternalIssuerConfig) -> Result<RootInfo, IssuerError> {
    let path = config.root_cert_path();
    let pem = match tokio::fs::read_to_string(&path).await {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IssuerError::Internal(format!(
                "the internal CA has no root yet at {}: the first worker (or `certfleet up`) using it creates it",
                path.display()
            )));
        }
        Err(e) => return Err(internal("read", &path, e)),
    };
    let der = certinfo::pem_chain_to_der(&pem)
        .map_err(|e| internal("parse", &path, e))?
        .into_iter()
        .next()
        .ok_or_else(|| internal("parse", &path, "no certificate"))?;
    let facts = certinfo::describe(&der).map_err(|e| internal("parse", &path, e))?;
    let subject = certinfo::subject(&der).map_err(|e| internal("parse", &path, e))?;
    Ok(RootInfo { path, subject, not_after: facts.not_after, sha256_fingerprint: facts.sha256_fingerprint, pem })
}

impl InternalCa {
    /// Loads the root from `ca_dir`, creating it first if it does not exist.
    pub async fn load_or_create(config: &InternalIssuerConfig) -> Result<Self, IssuerError> {
        let root_dir = config.ca_dir.join("root");
        if !tokio::fs::try_exists(root_dir.join("ca.crt")).await.unwrap_or(false) {
            Self::create(config, &root_dir).await?;
        }
        Self::load(&root_dir, config.validity).await
    }

    async fn create(config: &InternalIssuerConfig, root_dir: &Path) -> Result<(), IssuerError> {
        tokio::fs::create_dir_all(&config.ca_dir).await.map_err(|e| internal("create", &config.ca_dir, e))?;
        let candidate: PathBuf =
            config.ca_dir.join(format!(".root-{}-{:08x}", std::process::id(), rand::rng().random::<u32>()));
        let builder = {
            let mut b = std::fs::DirBuilder::new();
            b.mode(0o700);
            b
        };
        let c = candidate.clone();
        tokio::task::spawn_blocking(move || builder.create(&c))
            .await
            .map_err(|e| IssuerError::Internal(e.to_string()))?
            .map_err(|e| internal("create", &candidate, e))?;
        let alg = config.root_key_algorithm;
        let key = tokio::task::spawn_blocking(move || crate::keygen::key_pair(alg))
            .await
            .map_err(|e| IssuerError::Internal(e.to_string()))?
            .map_err(|e| IssuerError::Internal(e.to_string()))?;
        let cert = root_params(config).self_signed(&key).map_err(|e| IssuerError::Internal(e.to_string()))?;
        write_file(&candidate.join("ca.key"), key.serialize_pem().as_bytes(), 0o600).await?;
        write_file(&candidate.join("ca.crt"), cert.pem().as_bytes(), 0o644).await?;
        match tokio::fs::rename(&candidate, root_dir).await {
            Ok(()) => {
                tracing::info!(root = %root_dir.display(), "created internal CA root");
                Ok(())
            }
            Err(_) if tokio::fs::try_exists(root_dir.join("ca.crt")).await.unwrap_or(false) => {
                // Another process won the race; use its root.
                let _ = tokio::fs::remove_dir_all(&candidate).await;
                Ok(())
            }
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&candidate).await;
                Err(internal("rename onto", root_dir, e))
            }
        }
    }

    async fn load(root_dir: &Path, validity: Duration) -> Result<Self, IssuerError> {
        let cert_path = root_dir.join("ca.crt");
        let key_path = root_dir.join("ca.key");
        let root_pem = tokio::fs::read_to_string(&cert_path).await.map_err(|e| internal("read", &cert_path, e))?;
        let key_pem = tokio::fs::read_to_string(&key_path).await.map_err(|e| internal("read", &key_path, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|_| internal("parse key", &key_path, "not a valid PEM key"))?;
        let issuer = RcIssuer::from_ca_cert_pem(&root_pem, key).map_err(|e| internal("parse", &cert_path, e))?;
        Ok(Self { issuer, root_pem, validity })
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }
}

fn san_text(san: &SanType) -> Option<String> {
    match san {
        SanType::DnsName(n) => Some(n.to_string()),
        SanType::IpAddress(ip) => Some(ip.to_string()),
        _ => None,
    }
}

/// Checks that the CSR asks for exactly the names the job asks for, nothing more.
fn check_names(csr: &CertificateSigningRequestParams, job: &RotationJob) -> Result<(), IssuerError> {
    let mut wanted: BTreeSet<String> = job.subject_alternative_names.iter().map(|s| s.to_ascii_lowercase()).collect();
    wanted.insert(job.common_name.to_ascii_lowercase());
    for san in &csr.params.subject_alt_names {
        let name = san_text(san).ok_or_else(|| {
            IssuerError::BadCsr("the CSR has a SAN that is neither a DNS name nor an IP address".to_owned())
        })?;
        if !wanted.contains(&name.to_ascii_lowercase()) {
            return Err(IssuerError::BadCsr(format!("CSR asks for {name:?}, which the asset does not list")));
        }
    }
    Ok(())
}

#[async_trait]
impl Issuer for InternalCa {
    async fn sign(&self, csr_der: &[u8], job: &RotationJob) -> Result<Issued, IssuerError> {
        let mut csr = CertificateSigningRequestParams::from_der(&csr_der.into())
            .map_err(|e| IssuerError::BadCsr(e.to_string()))?;
        check_names(&csr, job)?;
        let now = OffsetDateTime::now_utc();
        let p = &mut csr.params;
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = now + time::Duration::try_from(self.validity).unwrap_or(time::Duration::days(4));
        p.serial_number = Some(random_serial());
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, job.common_name.as_str());
        p.distinguished_name = dn;
        let cert = csr.signed_by(&self.issuer).map_err(|e| IssuerError::Internal(e.to_string()))?;
        let leaf_der = cert.der().to_vec();
        let info = certinfo::describe(&leaf_der).map_err(|e| IssuerError::Internal(e.to_string()))?;
        Ok(Issued { chain_pem: format!("{}{}", cert.pem(), self.root_pem), leaf_der, info })
    }
}
