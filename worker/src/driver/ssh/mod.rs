//! The SSH connection shared by the `linux-ssh` and `haproxy` drivers: one connection per
//! job (connect, pin or trust the host key, public-key login), several exec channels on it,
//! each with a timeout, and a direct-streamlocal channel to a unix socket on the device.

pub mod hostkey;
pub mod remote;
pub mod shell;
mod streamlocal;

use super::DriverError;

mod settings;
use certfleet_shared::config::drivers::SshClientConfig;
use hostkey::{HostKeyCheck, HostKeyPin, Observed};
use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, Disconnect};
pub use settings::SshSettings;
use std::fmt;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing::debug;

/// The worker's SSH identity (from `[drivers.ssh]`), loaded once at start-up.
#[derive(Clone)]
pub struct SshClient(Option<Arc<Identity>>);

struct Identity {
    key: Arc<PrivateKey>,
    user: String,
    connect_timeout: Duration,
    command_timeout: Duration,
}

impl fmt::Debug for SshClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        match &self.0 {
            Some(id) => write!(f, "SshClient(user={}, key=<redacted>)", id.user),
            None => f.write_str("SshClient(unconfigured)"),
        }
    }
}

impl SshClient {
    /// Loads the private key named in the config (checked to be mode 0600). Without a
    /// config, every job of an SSH driver fails with a clear reason.
    pub fn from_config(config: Option<&SshClientConfig>) -> Result<Self, DriverError> {
        let Some(c) = config else { return Ok(Self(None)) };
        let path = &c.private_key_file;
        let bad = |what: String| DriverError::InvalidSettings(format!("[drivers.ssh] private_key_file {what}"));
        // Start-up only, before any job runs.
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "{} has mode {mode:04o}; it must be 0600 (no group or other access)",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let key = russh::keys::decode_secret_key(&text, None)
            .map_err(|_| bad(format!("{} is not an unencrypted OpenSSH private key", path.display())))?;
        Ok(Self(Some(Arc::new(Identity {
            key: Arc::new(key),
            user: c.user.clone(),
            connect_timeout: c.connect_timeout,
            command_timeout: c.command_timeout,
        }))))
    }
}

/// Where and how to reach one device, from the asset's settings.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// Host name or address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// Login user (None: the worker's default).
    pub user: Option<String>,
    /// The pinned host key (None: trust on first use).
    pub pin: Option<HostKeyPin>,
    /// Overrides of the worker's timeouts.
    pub connect_timeout: Option<Duration>,
    /// Per-command budget override.
    pub command_timeout: Option<Duration>,
}

/// What one remote command did.
#[derive(Debug)]
pub struct Output {
    /// Exit status (None if the command died without one, e.g. by a signal).
    pub status: Option<u32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// The last 300 characters of stderr (or stdout), for an error message.
    pub fn tail(&self) -> String {
        let text = if self.stderr.is_empty() { &self.stdout } else { &self.stderr };
        let text = String::from_utf8_lossy(text);
        let text = text.trim();
        let skip = text.chars().count().saturating_sub(300);
        text.chars().skip(skip).collect()
    }

    /// `<what> exited with status N: <tail>` (or `(no output)`), for an error message.
    pub fn failed(&self, what: &str) -> String {
        super::command_failed(what, &super::ended(self.status.map(i64::from), None), &self.tail())
    }
}

/// One authenticated connection to a device. Its unix-socket channel is in `streamlocal.rs`.
pub struct SshSession {
    handle: Handle<HostKeyCheck>,
    observed: Observed,
    pinned: bool,
    command_timeout: Duration,
    label: String,
}

impl SshClient {
    /// Connects, checks the host key against the pin (or records it on first use) and logs
    /// in with the worker's key. A mismatched host key or a refused login is `Auth`.
    pub async fn connect(&self, target: &SshTarget) -> Result<SshSession, DriverError> {
        let id = self.0.as_ref().ok_or_else(|| {
            DriverError::Auth("this worker has no SSH identity: configure [drivers.ssh] private_key_file".into())
        })?;
        let user = target.user.clone().unwrap_or_else(|| id.user.clone());
        let label = format!("{user}@{}:{}", target.host, target.port);
        let budget = target.connect_timeout.unwrap_or(id.connect_timeout);
        let seen = Arc::new(OnceLock::new());
        let check = HostKeyCheck { pin: target.pin.clone(), seen: seen.clone() };
        let config = Arc::new(client::Config { nodelay: true, ..Default::default() });
        let connecting = async {
            let mut handle = client::connect(config, (target.host.as_str(), target.port), check).await?;
            let hash = handle.best_supported_rsa_hash().await?.flatten();
            let auth =
                handle.authenticate_publickey(user.clone(), PrivateKeyWithHashAlg::new(id.key.clone(), hash)).await?;
            Ok::<_, russh::Error>((handle, auth))
        };
        let result = tokio::time::timeout(budget, connecting).await;
        let observed = seen.get().cloned();
        if let Some(o) = &observed
            && !o.accepted
        {
            return Err(DriverError::Auth(format!(
                "{label}: host key mismatch: the device presented {}, the asset pins {}",
                o.fingerprint,
                target.pin.as_ref().map_or_else(String::new, ToString::to_string)
            )));
        }
        let (handle, auth) = match result {
            Err(_) => return Err(DriverError::Timeout { op: "ssh connect and login", after: budget }),
            Ok(Err(e)) => return Err(connect_error(&label, e)),
            Ok(Ok(v)) => v,
        };
        let Some(observed) = observed else {
            return Err(DriverError::Unreachable(format!("{label}: no host key was presented")));
        };
        if !auth.success() {
            return Err(DriverError::Auth(format!("{label}: public key authentication refused")));
        }
        debug!(%label, host_key = %observed.fingerprint, "ssh session open");
        Ok(SshSession {
            handle,
            observed,
            pinned: target.pin.is_some(),
            command_timeout: target.command_timeout.unwrap_or(id.command_timeout),
            label,
        })
    }
}

fn connect_error(label: &str, e: russh::Error) -> DriverError {
    DriverError::Unreachable(format!("{label}: {e}"))
}

impl SshSession {
    /// The host key trusted on first use (None when the asset pins one).
    pub fn observed_host_key(&self) -> Option<String> {
        (!self.pinned).then(|| self.observed.openssh.clone())
    }

    /// `user@host:port`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `command` on a new exec channel with the session's per-command timeout.
    pub async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, DriverError> {
        self.exec_timeout(command, stdin, self.command_timeout).await
    }

    /// Runs `command` (a shell line for the login shell) with `stdin`, within `budget`.
    pub async fn exec_timeout(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        budget: Duration,
    ) -> Result<Output, DriverError> {
        let run = async {
            let mut ch = self.handle.channel_open_session().await?;
            ch.exec(true, command).await?;
            if let Some(input) = stdin {
                ch.data(input).await?;
            }
            ch.eof().await?;
            let mut out = Output { status: None, stdout: Vec::new(), stderr: Vec::new() };
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    _ => {}
                }
            }
            Ok::<_, russh::Error>(out)
        };
        match tokio::time::timeout(budget, run).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(DriverError::Unreachable(format!("{}: remote command failed: {e}", self.label))),
            Err(_) => Err(DriverError::Timeout { op: "remote command", after: budget }),
        }
    }

    /// Says goodbye to the server (bounded; the connection is dropped either way).
    pub async fn close(self) {
        let bye = self.handle.disconnect(Disconnect::ByApplication, "", "en");
        let _ = tokio::time::timeout(Duration::from_secs(5), bye).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &std::path::Path) -> SshClientConfig {
        SshClientConfig {
            private_key_file: path.to_owned(),
            user: "root".into(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_key_file_must_be_private_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SshClient::from_config(Some(&config(&key))).unwrap_err().to_string();
        assert!(err.contains("mode 0644") && err.contains("0600"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let client = SshClient::from_config(Some(&config(&key))).unwrap();
        assert_eq!(format!("{client:?}"), "SshClient(user=root, key=<redacted>)");

        let text = std::fs::read_to_string(&key).unwrap();
        let broken = dir.path().join("broken");
        std::fs::write(&broken, text.replace('A', "B")).unwrap();
        std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = SshClient::from_config(Some(&config(&broken))).unwrap_err().to_string();
        let body = text.lines().nth(1).unwrap();
        assert!(!err.contains(&body[..20]), "no key material in {err}");
        assert!(SshClient::from_config(None).is_ok());
    }
}
