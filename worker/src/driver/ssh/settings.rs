//! The SSH keys of an asset's settings (`host`, `ssh_port`, `user`, `host_key`, timeouts),
//! shared by every SSH driver: split off the settings object before the driver parses the
//! rest with its own `deny_unknown_fields` struct, so typos are still reported.

use super::SshTarget;
use super::hostkey::HostKeyPin;
use crate::driver::DriverError;
use serde::Deserialize;
use std::time::Duration;

/// Keys of [`SshSettings`], as they appear in an asset's settings.
const KEYS: &[&str] = &["host", "ssh_port", "user", "host_key", "connect_timeout_secs", "command_timeout_secs"];

/// How to reach a device over SSH, from the asset's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Host name or address; default: the asset's `ip_address`.
    #[serde(default)]
    pub host: Option<String>,
    /// Port (default 22).
    #[serde(default)]
    pub ssh_port: Option<u16>,
    /// Login (default: the worker's `[drivers.ssh] user`).
    #[serde(default)]
    pub user: Option<String>,
    /// Pinned host key (`ssh-ed25519 AAAA...` or `SHA256:...`); none = trust on first use.
    #[serde(default)]
    pub host_key: Option<String>,
    /// Override of the worker's connect timeout.
    #[serde(default)]
    pub connect_timeout_secs: Option<u64>,
    /// Override of the worker's per-command timeout.
    #[serde(default)]
    pub command_timeout_secs: Option<u64>,
}

impl SshSettings {
    /// Splits the SSH keys off `settings`: returns them and the remaining settings, which the
    /// driver parses itself. `driver` names the driver in errors.
    pub fn split(settings: &serde_json::Value, driver: &str) -> Result<(Self, serde_json::Value), DriverError> {
        let Some(object) = settings.as_object() else {
            return Ok((Self::default(), settings.clone()));
        };
        let (ssh, rest): (serde_json::Map<_, _>, serde_json::Map<_, _>) =
            object.clone().into_iter().partition(|(k, _)| KEYS.contains(&k.as_str()));
        let ssh = serde_json::from_value(serde_json::Value::Object(ssh))
            .map_err(|e| DriverError::InvalidSettings(format!("{driver} driver: {e}")))?;
        Ok((ssh, serde_json::Value::Object(rest)))
    }

    /// The connection target, defaulting the host to the asset's address.
    pub fn target(&self, job: &certfleet_proto::RotationJob) -> Result<SshTarget, DriverError> {
        let host = self.host.as_deref().or(job.ip_address.as_deref()).ok_or_else(|| {
            DriverError::InvalidSettings("no SSH host: set `host` in the settings or the asset's ip_address".into())
        })?;
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)) {
            return Err(DriverError::InvalidSettings(format!("host {host:?} is not a host name or address")));
        }
        if let Some(user) = self.user.as_deref()
            && (user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
        {
            return Err(DriverError::InvalidSettings(format!("user {user:?} is not a valid login name")));
        }
        let secs = |s: Option<u64>, name: &str| match s {
            Some(0) => Err(DriverError::InvalidSettings(format!("{name} must be at least 1"))),
            other => Ok(other.map(Duration::from_secs)),
        };
        Ok(SshTarget {
            host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            port: self.ssh_port.unwrap_or(22),
            user: self.user.clone(),
            pin: self.host_key.as_deref().map(HostKeyPin::parse).transpose()?,
            connect_timeout: secs(self.connect_timeout_secs, "connect_timeout_secs")?,
            command_timeout: secs(self.command_timeout_secs, "command_timeout_secs")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keys_are_split_off_and_checked() {
        let settings = serde_json::json!({"host": "10.0.0.1", "ssh_port": 2222, "cert_path": "/c"});
        let (ssh, rest) = SshSettings::split(&settings, "linux-ssh").unwrap();
        assert_eq!((ssh.host.as_deref(), ssh.ssh_port), (Some("10.0.0.1"), Some(2222)));
        assert_eq!(rest, serde_json::json!({"cert_path": "/c"}));
        let bad = serde_json::json!({"ssh_port": "twenty-two"});
        assert!(
            matches!(SshSettings::split(&bad, "haproxy"), Err(DriverError::InvalidSettings(m)) if m.contains("haproxy"))
        );
    }
}
