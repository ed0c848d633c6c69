//! `linux-ssh` driver: a Linux host reached over SSH (one connection per job). `openssl` on
//! the host makes the key and CSR in a private temp dir; the chain and key are staged beside
//! their targets, the current pair is kept as `.prev`, and the staged files are renamed into
//! place; then the asset's `reload_command` runs. Any failure after install restores `.prev`
//! and reloads again. The private key never leaves the host. The install marker
//! (`driver::marker`) makes a redelivered job validate its earlier install instead of
//! rotating again; the reload command sees the job id in `CERTFLEET_JOB_ID`.
//!
//! Settings: `{"cert_path": "/etc/nginx/site.crt", "key_path": "/etc/nginx/site.key",
//! "reload_command": "nginx -s reload" | ["argv", ...], "host": "10.0.0.7", "ssh_port": 22,
//! "user": "deploy", "host_key": "ssh-ed25519 AAAA..." | "SHA256:...",
//! "connect_timeout_secs": 10, "command_timeout_secs": 60, "reload_timeout_secs": 60}`.

use super::ssh::remote::{Content, RemoteFiles, Target};
use super::ssh::shell::quote;
use super::ssh::{SshClient, SshSession, SshSettings};
use super::{DeviceSession, DriverError, PlatformDriver};
use crate::issuer::Issued;
use async_trait::async_trait;
use certfleet_proto::{Driver, RotationJob};
use serde::Deserialize;
use std::time::Duration;

/// The `linux-ssh` driver.
#[derive(Debug, Clone)]
pub struct LinuxSshDriver {
    client: SshClient,
}

impl LinuxSshDriver {
    /// The driver, logging in with the worker's SSH identity.
    pub fn new(client: SshClient) -> Self {
        Self { client }
    }
}

/// A reload command: a shell line run as is, or an argv list (each argument quoted).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ReloadCommand {
    /// Run by the login shell as written.
    Shell(String),
    /// Program and arguments.
    Argv(Vec<String>),
}

impl ReloadCommand {
    /// The command line to send.
    pub fn line(&self) -> Result<String, DriverError> {
        match self {
            Self::Shell(line) if line.trim().is_empty() => {
                Err(DriverError::InvalidSettings("reload_command is empty".into()))
            }
            Self::Shell(line) => Ok(line.clone()),
            Self::Argv(argv) if argv.is_empty() => {
                Err(DriverError::InvalidSettings("reload_command is an empty list".into()))
            }
            Self::Argv(argv) => Ok(argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    cert_path: String,
    key_path: String,
    #[serde(default)]
    reload_command: Option<ReloadCommand>,
    #[serde(default)]
    reload_timeout_secs: Option<u64>,
}

/// Runs the reload command within its budget, with the job id in `CERTFLEET_JOB_ID`; any
/// failure is an `Activation` error (so the pipeline rolls back), carrying the command's
/// last words.
pub async fn run_reload(
    ssh: &SshSession,
    line: Option<&str>,
    job_id: &str,
    budget: Duration,
) -> Result<(), DriverError> {
    let Some(line) = line else { return Ok(()) };
    let command = format!("CERTFLEET_JOB_ID={}; export CERTFLEET_JOB_ID\n{line}", quote(job_id));
    let out = ssh
        .exec_timeout(&command, None, budget)
        .await
        .map_err(|e| DriverError::Activation(format!("reload command \"{line}\": {e}")))?;
    if out.success() { Ok(()) } else { Err(DriverError::Activation(out.failed(&format!("reload command \"{line}\"")))) }
}

struct LinuxSshSession {
    ssh: SshSession,
    files: RemoteFiles,
    reload: Option<String>,
    reload_timeout: Duration,
    cert_path: String,
    key_path: String,
}

#[async_trait]
impl PlatformDriver for LinuxSshDriver {
    fn kind(&self) -> Driver {
        Driver::LinuxSsh
    }

    async fn open(&self, job: &RotationJob) -> Result<Box<dyn DeviceSession>, DriverError> {
        let (ssh_settings, rest) = SshSettings::split(&job.settings, "linux-ssh")?;
        let s: Settings =
            serde_json::from_value(rest).map_err(|e| DriverError::InvalidSettings(format!("linux-ssh driver: {e}")))?;
        if s.cert_path == s.key_path {
            return Err(DriverError::InvalidSettings("cert_path and key_path must differ".into()));
        }
        let files = RemoteFiles::new(
            job.job_id,
            vec![
                Target { path: s.cert_path.clone(), content: Content::Chain },
                Target { path: s.key_path.clone(), content: Content::Key },
            ],
        )?;
        let reload = s.reload_command.as_ref().map(ReloadCommand::line).transpose()?;
        let target = ssh_settings.target(job)?;
        let ssh = self.client.connect(&target).await?;
        if let Err(e) = files.preflight(&ssh).await {
            ssh.close().await;
            return Err(e);
        }
        Ok(Box::new(LinuxSshSession {
            ssh,
            files,
            reload,
            reload_timeout: Duration::from_secs(s.reload_timeout_secs.unwrap_or(60).max(1)),
            cert_path: s.cert_path,
            key_path: s.key_path,
        }))
    }
}

/// Checks that `leaf` (DER) is the new certificate and `public_key` (SPKI DER) its key.
pub fn check_read_back(issued: &Issued, leaf: &[u8], public_key: &[u8], what: &str) -> Result<(), DriverError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    if leaf != issued.leaf_der.as_slice() {
        return Err(DriverError::Activation(format!("{what} does not hold the new certificate")));
    }
    let (_, cert) = X509Certificate::from_der(&issued.leaf_der)
        .map_err(|e| DriverError::Activation(format!("unreadable new certificate: {e}")))?;
    if cert.public_key().raw != public_key {
        return Err(DriverError::Activation(format!("the key in {what} does not match the new certificate")));
    }
    Ok(())
}

#[async_trait]
impl DeviceSession for LinuxSshSession {
    async fn resume(&mut self, job: &RotationJob) -> Result<Option<Issued>, DriverError> {
        self.files.resume(&self.ssh, job).await
    }

    async fn generate_csr(&mut self, job: &RotationJob) -> Result<Vec<u8>, DriverError> {
        self.files.generate_csr(&self.ssh, job).await
    }

    async fn install(&mut self, issued: &Issued) -> Result<(), DriverError> {
        self.files.install(&self.ssh, issued).await
    }

    async fn activate(&mut self) -> Result<(), DriverError> {
        run_reload(&self.ssh, self.reload.as_deref(), &self.files.job_id.to_string(), self.reload_timeout).await
    }

    async fn validate(&mut self, issued: &Issued) -> Result<(), DriverError> {
        let (leaf, public_key) = self.files.read_back(&self.ssh, &self.cert_path, &self.key_path).await?;
        check_read_back(issued, &leaf, &public_key, &self.cert_path)
    }

    async fn rollback(&mut self) -> Result<(), DriverError> {
        self.files.restore(&self.ssh).await?;
        run_reload(&self.ssh, self.reload.as_deref(), &self.files.job_id.to_string(), self.reload_timeout).await
    }

    async fn close(mut self: Box<Self>) {
        self.files.cleanup(&self.ssh).await;
        self.ssh.close().await;
    }

    fn observed_host_key(&self) -> Option<String> {
        self.ssh.observed_host_key()
    }
}
