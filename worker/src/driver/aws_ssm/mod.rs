//! `aws-ssm` driver: a Linux instance reached through AWS Systems Manager Run Command.
//! Every step is one `AWS-RunShellScript` command: the instance makes the key (umask 077,
//! private staging directory beside `key_path`) and prints only the CSR; after signing, the
//! chain is installed atomically with the previous pair kept as `.prev`; the reload command
//! activates it; the installed pair is read back; rollback restores `.prev` and reloads.
//! The install marker (`driver::marker`) is written with the pair; a redelivered job reads
//! it first (one `resume` command) and validates the earlier install instead of rotating.
//! Credentials and region come from the usual AWS chain (aws-config), never from settings.
//!
//! Settings: `{"instance_id": "i-0123456789abcdef0", "cert_path": "/etc/ssl/site.crt",
//! "key_path": "/etc/ssl/site.key", "reload_command": "systemctl reload nginx",
//! "region": "eu-west-1", "endpoint_url": "https://...", "command_timeout_secs": 120,
//! "api_timeout_secs": 20}`.

pub mod api;
pub mod script;

use super::{DeviceSession, DriverError, PlatformDriver};
use crate::issuer::Issued;
use api::{Ssm, Step};
use async_trait::async_trait;
use aws_sdk_ssm::config::{ProvideCredentials as _, Region};
use certfleet_proto::{Driver, RotationJob};
use script::Paths;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::OnceCell;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    instance_id: String,
    cert_path: String,
    key_path: String,
    reload_command: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    endpoint_url: Option<String>,
    #[serde(default = "default_command_timeout")]
    command_timeout_secs: u64,
    #[serde(default = "default_api_timeout")]
    api_timeout_secs: u64,
}

fn default_command_timeout() -> u64 {
    120
}
fn default_api_timeout() -> u64 {
    20
}

impl Settings {
    fn parse(value: &serde_json::Value) -> Result<Self, DriverError> {
        let s: Settings = serde_json::from_value(value.clone())
            .map_err(|e| DriverError::InvalidSettings(format!("aws-ssm driver: {e}")))?;
        let id = &s.instance_id;
        let hex = |h: &str, lens: &[usize]| lens.contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit());
        let id_ok = id.strip_prefix("i-").is_some_and(|h| hex(h, &[8, 17]))
            || id.strip_prefix("mi-").is_some_and(|h| hex(h, &[17]));
        if !id_ok {
            return Err(DriverError::InvalidSettings(format!(
                "instance_id {id:?} is not an EC2 or managed instance id"
            )));
        }
        if s.reload_command.trim().is_empty() || s.reload_command.contains(['\n', '\r', '\0']) {
            return Err(DriverError::InvalidSettings("reload_command must be one non-empty line".into()));
        }
        if s.command_timeout_secs == 0 || s.api_timeout_secs == 0 {
            return Err(DriverError::InvalidSettings("timeouts must be at least 1 second".into()));
        }
        Ok(s)
    }
}

/// The `aws-ssm` driver. The AWS configuration (credentials chain, default region) is
/// loaded once, on first use.
#[derive(Debug, Default)]
pub struct AwsSsmDriver {
    sdk: OnceCell<aws_config::SdkConfig>,
}

impl AwsSsmDriver {
    /// A driver with a ready AWS configuration instead of the default chain (embedders,
    /// tests against a local SSM endpoint).
    pub fn with_sdk_config(sdk: aws_config::SdkConfig) -> Self {
        Self { sdk: OnceCell::new_with(Some(sdk)) }
    }

    async fn sdk(&self) -> &aws_config::SdkConfig {
        self.sdk.get_or_init(|| aws_config::defaults(aws_config::BehaviorVersion::latest()).load()).await
    }
}

#[async_trait]
impl PlatformDriver for AwsSsmDriver {
    fn kind(&self) -> Driver {
        Driver::AwsSsm
    }

    async fn open(&self, job: &RotationJob) -> Result<Box<dyn DeviceSession>, DriverError> {
        let settings = Settings::parse(&job.settings)?;
        let paths = Paths::new(&settings.cert_path, &settings.key_path, &job.job_id.to_string())?;
        let api_timeout = Duration::from_secs(settings.api_timeout_secs);
        let sdk = self.sdk().await;
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| DriverError::Auth("no AWS credentials provider is configured".into()))?;
        match tokio::time::timeout(api_timeout, provider.provide_credentials()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(credentials_error(&e)),
            Err(_) => return Err(DriverError::Timeout { op: "AWS credentials", after: api_timeout }),
        }
        let timeouts = aws_sdk_ssm::config::timeout::TimeoutConfig::builder()
            .connect_timeout(api_timeout.min(Duration::from_secs(10)))
            .operation_timeout(api_timeout)
            .build();
        let mut config = aws_sdk_ssm::config::Builder::from(sdk).timeout_config(timeouts);
        if let Some(region) = &settings.region {
            config = config.region(Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            config = config.endpoint_url(url.clone());
        }
        let config = config.build();
        if config.region().is_none() {
            return Err(DriverError::InvalidSettings("no AWS region: set `region` or AWS_REGION".into()));
        }
        let ssm = Ssm {
            client: aws_sdk_ssm::Client::from_conf(config),
            instance_id: settings.instance_id.clone(),
            api_timeout,
            command_timeout: Duration::from_secs(settings.command_timeout_secs),
            tag: job.job_id.to_string(),
        };
        ssm.preflight().await?;
        Ok(Box::new(AwsSsmSession { ssm, paths, reload: settings.reload_command, sent: false, job_id: job.job_id }))
    }
}

/// No credentials, or bad credential configuration, is permanent; a credentials source
/// that failed or timed out (instance metadata, SSO, STS) is retried.
fn credentials_error(e: &aws_credential_types::provider::error::CredentialsError) -> DriverError {
    use aws_credential_types::provider::error::CredentialsError as E;
    let what = format!("AWS credentials: {}", aws_sdk_ssm::error::DisplayErrorContext(e));
    match e {
        E::CredentialsNotLoaded(_) | E::InvalidConfiguration(_) => DriverError::Auth(what),
        _ => DriverError::Unreachable(what),
    }
}

struct AwsSsmSession {
    ssm: Ssm,
    paths: Paths,
    reload: String,
    /// Whether anything was sent to the instance (then `close` cleans the staging directory).
    sent: bool,
    /// The job (recorded in the install marker).
    job_id: certfleet_proto::JobId,
}

#[async_trait]
impl DeviceSession for AwsSsmSession {
    async fn resume(&mut self, job: &RotationJob) -> Result<Option<Issued>, DriverError> {
        self.sent = true;
        let stdout = self.ssm.run(Step::Resume, &script::resume(&self.paths, job.job_id)).await?;
        let (found, chain) = super::marker::split_answer(&stdout);
        Ok(super::marker::resume(job.job_id, found, chain)?.map(|r| r.issued))
    }

    async fn generate_csr(&mut self, job: &RotationJob) -> Result<Vec<u8>, DriverError> {
        let script =
            script::generate(&self.paths, job.key_algorithm, &job.common_name, &job.subject_alternative_names)?;
        self.sent = true;
        let stdout = self.ssm.run(Step::Generate, &script).await?;
        script::parse_csr(&stdout)
    }

    async fn install(&mut self, issued: &Issued) -> Result<(), DriverError> {
        self.sent = true;
        let script = script::install(&self.paths, &issued.chain_pem, self.job_id, &issued.info.sha256_fingerprint);
        self.ssm.run(Step::Install, &script).await.map(|_| ())
    }

    async fn activate(&mut self) -> Result<(), DriverError> {
        self.ssm.run(Step::Activate, &script::activate(&self.reload)).await.map(|_| ())
    }

    async fn validate(&mut self, issued: &Issued) -> Result<(), DriverError> {
        let stdout = self.ssm.run(Step::Validate, &script::validate(&self.paths)).await?;
        match script::parse_fingerprint(&stdout) {
            Some(fp) if fp == issued.info.sha256_fingerprint => Ok(()),
            Some(fp) => {
                Err(DriverError::Activation(format!("{} holds the certificate {fp}, not the new one", self.paths.cert)))
            }
            None => Err(DriverError::Activation("the validate command printed no certificate fingerprint".into())),
        }
    }

    async fn rollback(&mut self) -> Result<(), DriverError> {
        self.ssm.run(Step::Rollback, &script::rollback(&self.paths, &self.reload)).await.map(|_| ())
    }

    async fn close(self: Box<Self>) {
        if self.sent
            && let Err(e) = self.ssm.send("cleanup", &script::cleanup(&self.paths)).await
        {
            tracing::warn!(error = %e, instance = %self.ssm.instance_id, "could not clean the staging directory");
        }
    }
}
