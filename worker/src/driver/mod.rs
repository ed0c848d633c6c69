//! Platform drivers: how a worker reaches a device, has it make a key and CSR, installs the
//! signed chain, activates it, checks it, and undoes it when something fails.
//!
//! Adding a driver: one module here, one `certfleet_proto::Driver` variant, one arm in
//! [`build`], and a route in `routes.toml`.

#[cfg(feature = "aws")]
pub mod aws_ssm;
pub mod haproxy;
pub mod linux_ssh;
pub mod local;
pub mod marker;
pub mod panos;
pub mod ssh;

use crate::issuer::Issued;
use async_trait::async_trait;
use certfleet_proto::{Driver, RotationJob};
use certfleet_shared::config::drivers::DriversConfig;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A driver failure, classified once by `outcome::JobError::classify`.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The asset's settings cannot work (missing path, bad value): permanent.
    #[error("invalid settings: {0}")]
    InvalidSettings(String),
    /// The device refused our credentials: permanent.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The device could not be reached or answered with a passing fault: retried.
    #[error("device unreachable: {0}")]
    Unreachable(String),
    /// A device round trip took too long: retried.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// What was attempted.
        op: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// A step on the device failed after the new certificate was installed (reload,
    /// validation). The driver rolls back when it sees this.
    #[error("{0}")]
    Activation(String),
    /// Anything else on the device: permanent, with the reason.
    #[error("{0}")]
    Device(String),
}

/// One rotation on one device, from pre-flight to close. Each method is one step of the
/// common contract; the pipeline in `rotation.rs` calls them in order.
#[async_trait]
pub trait DeviceSession: Send {
    /// The install an earlier delivery of `job` left on the device (see [`marker`]): `Some`
    /// when the device's install marker names this job and the device still holds the leaf
    /// it recorded; the pipeline then activates and validates that pair instead of
    /// deploying a second one. Drivers whose devices cannot hold a marker keep `None`.
    async fn resume(&mut self, _job: &RotationJob) -> Result<Option<Issued>, DriverError> {
        Ok(None)
    }
    /// Has the device generate a fresh key and return a DER CSR for the job's names.
    async fn generate_csr(&mut self, job: &RotationJob) -> Result<Vec<u8>, DriverError>;
    /// Installs the chain (and the key made on the device) atomically, keeping the
    /// previous pair, with the install marker naming the job. A failure here leaves the
    /// device unchanged.
    async fn install(&mut self, issued: &Issued) -> Result<(), DriverError>;
    /// Makes the service use the new pair (reload, commit). Failure → rollback.
    async fn activate(&mut self) -> Result<(), DriverError>;
    /// Checks that the new certificate is what the device now has or serves.
    async fn validate(&mut self, issued: &Issued) -> Result<(), DriverError>;
    /// Restores the previous pair and re-activates it.
    async fn rollback(&mut self) -> Result<(), DriverError>;
    /// Ends the session on every path (closes connections, removes temporary files).
    async fn close(self: Box<Self>);
    /// The SSH host key this session trusted on first use (no pin in the settings), in
    /// OpenSSH form, for the inventory to pin. Drivers without host keys return `None`.
    fn observed_host_key(&self) -> Option<String> {
        None
    }
}

/// A platform driver.
#[async_trait]
pub trait PlatformDriver: Send + Sync {
    /// Which driver this is.
    fn kind(&self) -> Driver;
    /// Pre-flight: checks the settings and reaches the device.
    async fn open(&self, job: &RotationJob) -> Result<Box<dyn DeviceSession>, DriverError>;
}

/// Builds the driver implementation for `kind`, with the worker-side settings it needs.
pub fn build(kind: Driver, config: &DriversConfig) -> Result<Arc<dyn PlatformDriver>, DriverError> {
    Ok(match kind {
        Driver::Local => Arc::new(local::LocalDriver),
        Driver::LinuxSsh => Arc::new(linux_ssh::LinuxSshDriver::new(ssh::SshClient::from_config(config.ssh.as_ref())?)),
        Driver::Haproxy => Arc::new(haproxy::HaproxyDriver::new(ssh::SshClient::from_config(config.ssh.as_ref())?)),
        #[cfg(feature = "aws")]
        Driver::AwsSsm => Arc::new(aws_ssm::AwsSsmDriver::default()),
        #[cfg(not(feature = "aws"))]
        Driver::AwsSsm => return Err(DriverError::InvalidSettings(not_built(kind))),
        Driver::Panos => Arc::new(panos::PanosDriver::new(&config.panos)),
    })
}

/// Whether this build of the worker has `kind` (the `aws` feature brings `aws-ssm`).
pub fn built(kind: Driver) -> bool {
    cfg!(feature = "aws") || kind != Driver::AwsSsm
}

/// The error for a driver this build leaves out.
#[cfg(not(feature = "aws"))]
fn not_built(kind: Driver) -> String {
    format!("the {kind} driver is not in this build of the worker (built without the `aws` feature)")
}

/// The drivers a worker is tagged with.
#[derive(Clone, Default)]
pub struct DriverSet(HashMap<Driver, Arc<dyn PlatformDriver>>);

impl DriverSet {
    /// The drivers named in `kinds` (every driver of this build if empty). Fails when a
    /// driver's worker-side settings are unusable (an SSH key file with loose permissions,
    /// ...), or when a named driver is not in this build.
    pub fn new(kinds: &[Driver], config: &DriversConfig) -> Result<Self, DriverError> {
        let all: Vec<Driver> = Driver::ALL.iter().copied().filter(|k| built(*k)).collect();
        let kinds = if kinds.is_empty() { &all[..] } else { kinds };
        kinds.iter().map(|k| Ok((*k, build(*k, config)?))).collect::<Result<_, _>>().map(Self)
    }

    /// The driver for `kind`, if this worker serves it.
    pub fn get(&self, kind: Driver) -> Option<&Arc<dyn PlatformDriver>> {
        self.0.get(&kind)
    }

    /// The served drivers, sorted.
    pub fn kinds(&self) -> Vec<Driver> {
        let mut k: Vec<Driver> = self.0.keys().copied().collect();
        k.sort();
        k
    }
}

/// How a finished command ended, in words: `exited with status 1`, `was killed by signal
/// 9`, or `ended without an exit status`.
pub fn ended(code: Option<i64>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        (None, None) => "ended without an exit status".to_owned(),
    }
}

/// `<what> <ended>: <last output>`, or `<what> <ended> (no output)` when it printed nothing.
pub fn command_failed(what: &str, ended: &str, tail: &str) -> String {
    let tail = tail.trim();
    if tail.is_empty() { format!("{what} {ended} (no output)") } else { format!("{what} {ended}: {tail}") }
}

#[cfg(test)]
mod message_tests {
    use super::*;

    #[test]
    fn failed_commands_read_as_sentences() {
        assert_eq!(
            command_failed("reload command \"false\"", &ended(Some(1), None), ""),
            "reload command \"false\" exited with status 1 (no output)"
        );
        assert_eq!(command_failed("x", &ended(None, Some(9)), " boom\n"), "x was killed by signal 9: boom");
        assert_eq!(ended(None, None), "ended without an exit status");
    }
}
