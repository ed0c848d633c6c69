//! Worker-side driver settings: the secrets and defaults a driver needs that must never
//! travel in a job's asset settings (those are published over AMQP).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[drivers]`: per-driver worker settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriversConfig {
    /// `[drivers.ssh]`: the SSH client used by the `linux-ssh` and `haproxy` drivers.
    /// Without it, jobs for those drivers fail as dead with a clear reason.
    pub ssh: Option<SshClientConfig>,
    /// `[drivers.panos]`: the PAN-OS XML API driver.
    pub panos: PanosDriverConfig,
}

/// The SSH identity workers log in to devices with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshClientConfig {
    /// OpenSSH private key (ed25519, ecdsa or rsa, unencrypted). The file must have mode
    /// 0600 (no group or other bits); the worker refuses to start otherwise.
    pub private_key_file: PathBuf,
    /// Login user when the asset's settings name none (default `root`).
    #[serde(default = "default_user")]
    pub user: String,
    /// Budget for TCP connect, key exchange and authentication (default `10s`).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Default budget of one remote command (default `60s`); assets may override it with
    /// `command_timeout_secs`.
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub command_timeout: Duration,
}

fn default_user() -> String {
    "root".to_owned()
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(60)
}

/// `[drivers.panos]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PanosDriverConfig {
    /// TOML file (mode 0600 or stricter, checked at each use) mapping a credential name to
    /// `{ username = "...", password = "..." }` or `{ api_key = "..." }`. Assets name the
    /// credential in their settings (`credential = "fw-admins"`); the secret itself never
    /// leaves this file. Without it, `panos` jobs fail as invalid settings.
    pub credentials_file: Option<PathBuf>,
}
