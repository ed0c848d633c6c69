//! `panos` driver: a Palo Alto Networks firewall (PAN-OS 9/10) through its XML API. The
//! firewall generates the key and a CSR (`<signed-by>external</signed-by>`) under a new
//! certificate name per rotation (`<certificate_name>-<yyyymmddHHMMSS>`); the signed chain
//! is imported onto that name (the key never leaves the firewall), bound to the SSL/TLS
//! service profile, and committed. The previous certificate stays on the firewall, so a
//! rollback re-binds it and commits again.
//!
//! Settings: `{"host": "fw1.example.net", "api_port": 443, "credential": "fw-admins",
//! "certificate_name": "portal", "ssl_tls_service_profile": "portal-profile",
//! "ca_bundle": "/etc/certfleet/fw-ca.pem", "api_timeout_secs": 30,
//! "commit_timeout_secs": 300}`. The credential itself lives in the worker's
//! `[drivers.panos] credentials_file`.

pub mod api;
pub mod credentials;
pub mod xml;

use super::{DeviceSession, DriverError, PlatformDriver};
use crate::issuer::Issued;
use api::{Api, Trust};
use async_trait::async_trait;
use certfleet_proto::{Driver, KeyAlgorithm, RotationJob};
use certfleet_shared::config::PanosDriverConfig;
use credentials::Credential;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use xml::escape;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    host: String,
    #[serde(default = "default_port")]
    api_port: u16,
    credential: String,
    certificate_name: String,
    ssl_tls_service_profile: String,
    #[serde(default)]
    ca_bundle: Option<PathBuf>,
    #[serde(default = "default_api_timeout")]
    api_timeout_secs: u64,
    #[serde(default = "default_commit_timeout")]
    commit_timeout_secs: u64,
}

fn default_port() -> u16 {
    443
}
fn default_api_timeout() -> u64 {
    30
}
fn default_commit_timeout() -> u64 {
    300
}

/// Longest base name: PAN-OS names hold 63 characters, and the rotation adds 15.
const MAX_BASE_NAME: usize = 48;

impl Settings {
    fn parse(value: &serde_json::Value) -> Result<Self, DriverError> {
        let s: Settings = serde_json::from_value(value.clone())
            .map_err(|e| DriverError::InvalidSettings(format!("panos driver: {e}")))?;
        let plain = |v: &str, extra: &[u8]| {
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b) || extra.contains(&b))
        };
        if !plain(&s.certificate_name, b"") || s.certificate_name.len() > MAX_BASE_NAME {
            return Err(DriverError::InvalidSettings(format!(
                "certificate_name {:?} must be at most {MAX_BASE_NAME} letters, digits, _ . -",
                s.certificate_name
            )));
        }
        if !plain(&s.ssl_tls_service_profile, b" ") || s.ssl_tls_service_profile.len() > 63 {
            return Err(DriverError::InvalidSettings(format!(
                "ssl_tls_service_profile {:?} must be at most 63 letters, digits, spaces, _ . -",
                s.ssl_tls_service_profile
            )));
        }
        if !plain(&s.host, b":") || s.api_port == 0 {
            return Err(DriverError::InvalidSettings(format!("host {:?} / api_port is not usable", s.host)));
        }
        if s.api_timeout_secs == 0 || s.commit_timeout_secs == 0 {
            return Err(DriverError::InvalidSettings("timeouts must be at least 1 second".into()));
        }
        Ok(s)
    }

    fn profile_xpath(&self) -> String {
        format!("/config/shared/ssl-tls-service-profile/entry[@name='{}']", escape(&self.ssl_tls_service_profile))
    }
}

/// The `panos` driver.
#[derive(Debug, Default)]
pub struct PanosDriver {
    credentials_file: Option<PathBuf>,
}

impl PanosDriver {
    /// A driver reading credentials as `config` says.
    pub fn new(config: &PanosDriverConfig) -> Self {
        Self { credentials_file: config.credentials_file.clone() }
    }
}

#[async_trait]
impl PlatformDriver for PanosDriver {
    fn kind(&self) -> Driver {
        Driver::Panos
    }

    async fn open(&self, job: &RotationJob) -> Result<Box<dyn DeviceSession>, DriverError> {
        let settings = Settings::parse(&job.settings)?;
        let credential = credentials::load(self.credentials_file.as_deref(), &settings.credential).await?;
        let trust = match (&settings.ca_bundle, job.certificate_validation) {
            (_, false) => Trust::Skip,
            (Some(path), true) => Trust::Bundle(
                tokio::fs::read(path)
                    .await
                    .map_err(|e| DriverError::InvalidSettings(format!("ca_bundle {}: {e}", path.display())))?,
            ),
            (None, true) => Trust::System,
        };
        let timeout = Duration::from_secs(settings.api_timeout_secs);
        let (host, port) = (settings.host.clone(), settings.api_port);
        // The system trust store is read from disk: off the runtime.
        let mut api = tokio::task::spawn_blocking(move || Api::new(&host, port, trust, timeout))
            .await
            .map_err(|e| DriverError::Device(format!("client setup task failed: {e}")))??;
        match &credential {
            Credential::Password { username, password } => api.keygen(username, password).await?,
            Credential::ApiKey { api_key } => api.use_key(api_key),
        }
        // Pre-flight: the profile exists (this also proves a ready API key), and which
        // certificate it uses now, for rollback.
        let profile = api.get(&settings.profile_xpath()).await?;
        if !profile.has(&["result", "entry"]) {
            return Err(DriverError::InvalidSettings(format!(
                "the firewall has no SSL/TLS service profile {:?} under /config/shared",
                settings.ssl_tls_service_profile
            )));
        }
        let previous = profile.text(&["entry", "certificate"]).filter(|c| !c.is_empty());
        let name = format!("{}-{}", settings.certificate_name, chrono::Utc::now().format("%Y%m%d%H%M%S"));
        Ok(Box::new(PanosSession { api, settings, previous, name, bound: false }))
    }
}

struct PanosSession {
    api: Api,
    settings: Settings,
    /// The certificate the profile used before this rotation.
    previous: Option<String>,
    /// This rotation's certificate name.
    name: String,
    /// Whether the profile was bound to the new certificate (in the candidate config).
    bound: bool,
}

/// The `<request><certificate><generate>` command for a CSR signed by an external CA.
pub fn generate_command(name: &str, job: &RotationJob) -> String {
    let algorithm = match job.key_algorithm {
        KeyAlgorithm::EcdsaP256 => "<ECDSA><ecdsa-nbits>256</ecdsa-nbits></ECDSA>",
        KeyAlgorithm::EcdsaP384 => "<ECDSA><ecdsa-nbits>384</ecdsa-nbits></ECDSA>",
        KeyAlgorithm::Rsa2048 => "<RSA><rsa-nbits>2048</rsa-nbits></RSA>",
        KeyAlgorithm::Rsa3072 => "<RSA><rsa-nbits>3072</rsa-nbits></RSA>",
        KeyAlgorithm::Rsa4096 => "<RSA><rsa-nbits>4096</rsa-nbits></RSA>",
    };
    let digest = if job.key_algorithm == KeyAlgorithm::EcdsaP384 { "sha384" } else { "sha256" };
    let mut names = vec![job.common_name.clone()];
    names.extend(job.subject_alternative_names.iter().filter(|n| **n != job.common_name).cloned());
    let (ips, hosts): (Vec<&String>, Vec<&String>) = names.iter().partition(|n| n.parse::<IpAddr>().is_ok());
    let members = |v: &[&String]| v.iter().map(|n| format!("<member>{}</member>", escape(n))).collect::<String>();
    let mut cmd = format!(
        "<request><certificate><generate><certificate-name>{}</certificate-name><name>{}</name>\
         <algorithm>{algorithm}</algorithm><digest>{digest}</digest><ca>no</ca><signed-by>external</signed-by>",
        escape(name),
        escape(&job.common_name)
    );
    if !hosts.is_empty() {
        cmd.push_str(&format!("<hostname>{}</hostname>", members(&hosts)));
    }
    if !ips.is_empty() {
        cmd.push_str(&format!("<ip>{}</ip>", members(&ips)));
    }
    cmd.push_str("</generate></certificate></request>");
    cmd
}

impl PanosSession {
    async fn bind(&mut self, certificate: &str) -> Result<(), DriverError> {
        let element = format!("<certificate>{}</certificate>", escape(certificate));
        self.api.set(&self.settings.profile_xpath(), &element).await
    }

    /// Commits and waits for the commit job; `false` when there was nothing to commit.
    async fn commit(&self) -> Result<bool, DriverError> {
        match self.api.commit().await? {
            Some(job) => {
                self.api.wait_job(job, Duration::from_secs(self.settings.commit_timeout_secs)).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[async_trait]
impl DeviceSession for PanosSession {
    async fn generate_csr(&mut self, job: &RotationJob) -> Result<Vec<u8>, DriverError> {
        self.api.op("generate certificate", &generate_command(&self.name, job)).await?;
        let pem = self.api.export_pem(&self.name).await?;
        crate::certinfo::csr_pem_to_der(&pem).map_err(|e| DriverError::Device(format!("PAN-OS CSR export: {e}")))
    }

    async fn install(&mut self, issued: &Issued) -> Result<(), DriverError> {
        self.api.import_pem(&self.name, &issued.chain_pem).await?;
        let name = self.name.clone();
        // Only the candidate configuration changes here; the running one changes at commit.
        self.bind(&name).await?;
        self.bound = true;
        Ok(())
    }

    async fn activate(&mut self) -> Result<(), DriverError> {
        match self.commit().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DriverError::Activation("the firewall had nothing to commit".into())),
            Err(DriverError::Device(m)) => Err(DriverError::Activation(m)),
            Err(other) => Err(other),
        }
    }

    async fn validate(&mut self, issued: &Issued) -> Result<(), DriverError> {
        let profile = self.api.show(&self.settings.profile_xpath()).await?;
        let bound = profile.text(&["entry", "certificate"]).unwrap_or_default();
        if bound != self.name {
            return Err(DriverError::Activation(format!("the running profile uses {bound:?}, not {:?}", self.name)));
        }
        let pem = self.api.export_pem(&self.name).await?;
        let ders = crate::certinfo::pem_chain_to_der(&pem).map_err(|e| DriverError::Activation(e.to_string()))?;
        if ders.first() != Some(&issued.leaf_der) {
            return Err(DriverError::Activation(format!("the firewall's {:?} is not the new certificate", self.name)));
        }
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), DriverError> {
        if !self.bound {
            return Ok(());
        }
        let previous = self.previous.clone().ok_or_else(|| {
            DriverError::Device("the profile had no certificate before this rotation; nothing to restore".into())
        })?;
        self.bind(&previous).await?;
        // Nothing to commit means the running configuration never left the old certificate.
        self.commit().await.map(|_| ())
    }

    async fn close(self: Box<Self>) {}
}
