//! `haproxy` driver: HAProxy's certificate is hot-swapped through its runtime API, with no
//! restart. The key and CSR are made on the HAProxy host over SSH (as `linux-ssh` does); the
//! bundle (chain + key) is written to `crt_path` atomically (previous kept as `.prev`), so a
//! restart serves the new pair too; then `set ssl cert` + `commit ssl cert` swap it in
//! memory (`abort ssl cert` if the set fails). The runtime API is reached through the SSH
//! connection (`socket_path`: a direct-streamlocal channel to the unix socket) or over TCP
//! (`api_address`, loopback only: the API is plaintext and the bundle carries the key).
//! Rollback restores `.prev` on disk and swaps it back in.

use super::linux_ssh::check_read_back;
use super::ssh::remote::{Content, RemoteFiles, Target};
use super::ssh::shell::{check_path, quote};
use super::ssh::{SshClient, SshSession, SshSettings};
use super::{DeviceSession, DriverError, PlatformDriver};
use crate::issuer::Issued;
use async_trait::async_trait;
use certfleet_proto::{Driver, RotationJob};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The `haproxy` driver.
#[derive(Debug, Clone)]
pub struct HaproxyDriver {
    client: SshClient,
}

impl HaproxyDriver {
    /// The driver, logging in with the worker's SSH identity.
    pub fn new(client: SshClient) -> Self {
        Self { client }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    crt_path: String,
    #[serde(default)]
    socket_path: Option<String>,
    #[serde(default)]
    api_address: Option<SocketAddr>,
}

/// How the runtime API is reached.
#[derive(Debug, Clone)]
enum Api {
    /// A unix socket on the device, through the SSH connection.
    Socket(String),
    /// A loopback TCP address.
    Tcp(SocketAddr),
}

struct HaproxySession {
    ssh: SshSession,
    files: RemoteFiles,
    api: Api,
    crt: String,
    api_timeout: Duration,
    /// Whether a new bundle was committed in memory (then rollback swaps the old one back).
    committed: bool,
}

#[async_trait]
impl PlatformDriver for HaproxyDriver {
    fn kind(&self) -> Driver {
        Driver::Haproxy
    }

    async fn open(&self, job: &RotationJob) -> Result<Box<dyn DeviceSession>, DriverError> {
        let (ssh_settings, rest) = SshSettings::split(&job.settings, "haproxy")?;
        let s: Settings =
            serde_json::from_value(rest).map_err(|e| DriverError::InvalidSettings(format!("haproxy driver: {e}")))?;
        check_path("crt_path", &s.crt_path)?;
        let api = match (&s.socket_path, s.api_address) {
            (Some(path), None) => {
                check_path("socket_path", path)?;
                Api::Socket(path.clone())
            }
            (None, Some(addr)) if addr.ip().is_loopback() => Api::Tcp(addr),
            (None, Some(addr)) => {
                return Err(DriverError::InvalidSettings(format!(
                    "api_address {addr} is not a loopback address: the runtime API is plaintext and the \
                     bundle carries the private key; use socket_path (through SSH) instead"
                )));
            }
            _ => return Err(DriverError::InvalidSettings("set exactly one of socket_path and api_address".into())),
        };
        let files =
            RemoteFiles::new(job.job_id, vec![Target { path: s.crt_path.clone(), content: Content::ChainThenKey }])?;
        let target = ssh_settings.target(job)?;
        let ssh = self.client.connect(&target).await?;
        let session = HaproxySession {
            ssh,
            files,
            api,
            crt: s.crt_path,
            api_timeout: Duration::from_secs(ssh_settings.command_timeout_secs.unwrap_or(30).max(1)),
            committed: false,
        };
        let checked = match session.files.preflight(&session.ssh).await {
            Ok(()) => session.check_api().await,
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            session.ssh.close().await;
            return Err(e);
        }
        Ok(Box::new(session))
    }
}

impl HaproxySession {
    /// One runtime API request; returns HAProxy's answer.
    async fn request(&self, request: &[u8]) -> Result<String, DriverError> {
        let answer = match &self.api {
            Api::Socket(path) => self.ssh.unix_socket_request(path, request).await?,
            Api::Tcp(addr) => {
                let run = async {
                    let mut stream = tokio::net::TcpStream::connect(addr).await?;
                    stream.write_all(request).await?;
                    stream.shutdown().await?;
                    let mut answer = Vec::new();
                    stream.read_to_end(&mut answer).await?;
                    Ok::<_, std::io::Error>(answer)
                };
                match tokio::time::timeout(self.api_timeout, run).await {
                    Ok(Ok(a)) => a,
                    Ok(Err(e)) => return Err(DriverError::Unreachable(format!("runtime API {addr}: {e}"))),
                    Err(_) => return Err(DriverError::Timeout { op: "runtime API request", after: self.api_timeout }),
                }
            }
        };
        Ok(String::from_utf8_lossy(&answer).trim().to_owned())
    }

    /// Pre-flight: the API answers and knows `crt_path` as a certificate.
    async fn check_api(&self) -> Result<(), DriverError> {
        let answer = self.request(format!("show ssl cert {}\n", self.crt).as_bytes()).await?;
        if answer.contains("Serial:") {
            Ok(())
        } else {
            Err(DriverError::InvalidSettings(format!("HAProxy does not serve crt_path {}: {answer}", self.crt)))
        }
    }

    /// Swaps in the bundle now at `crt_path` on disk: `set ssl cert` then `commit ssl cert`
    /// (`abort ssl cert` when the set is refused). The bundle goes from the device's file to
    /// the device's runtime API through this worker's memory only; it is never logged.
    async fn swap_in_file(&self) -> Result<(), DriverError> {
        let out = self.ssh.exec(&format!("cat {}", quote(&self.crt)), None).await?;
        if !out.success() {
            return Err(DriverError::Activation(format!("reading {} on the device failed: {}", self.crt, out.tail())));
        }
        let mut request = format!("set ssl cert {} <<\n", self.crt).into_bytes();
        request.extend_from_slice(&out.stdout);
        if !out.stdout.ends_with(b"\n") {
            request.push(b'\n');
        }
        request.push(b'\n');
        drop(out);
        let answer = self.request(&request).await;
        request.fill(0);
        let answer = answer?;
        if !answer.contains("Transaction created") && !answer.contains("Transaction updated") {
            let _ = self.request(format!("abort ssl cert {}\n", self.crt).as_bytes()).await;
            return Err(DriverError::Activation(format!("set ssl cert refused: {answer}")));
        }
        let answer = self.request(format!("commit ssl cert {}\n", self.crt).as_bytes()).await?;
        if !answer.contains("Success!") {
            let _ = self.request(format!("abort ssl cert {}\n", self.crt).as_bytes()).await;
            return Err(DriverError::Activation(format!("commit ssl cert failed: {answer}")));
        }
        Ok(())
    }
}

/// The `Serial:` line of `show ssl cert`, upper-case hex without separators.
fn shown_serial(answer: &str) -> Option<String> {
    answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("Serial:"))
        .map(|s| s.trim().replace(':', "").to_ascii_uppercase())
}

#[async_trait]
impl DeviceSession for HaproxySession {
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
        self.swap_in_file().await.map_err(|e| DriverError::Activation(e.to_string()))?;
        self.committed = true;
        Ok(())
    }

    async fn validate(&mut self, issued: &Issued) -> Result<(), DriverError> {
        let answer = self.request(format!("show ssl cert {}\n", self.crt).as_bytes()).await?;
        let want = issued.info.serial.trim_start_matches('0').to_ascii_uppercase();
        match shown_serial(&answer) {
            Some(serial) if serial.trim_start_matches('0') == want => {}
            other => {
                return Err(DriverError::Activation(format!(
                    "HAProxy reports serial {} for {}, not the new {}",
                    other.as_deref().unwrap_or("(none)"),
                    self.crt,
                    issued.info.serial
                )));
            }
        }
        let (leaf, public_key) = self.files.read_back(&self.ssh, &self.crt, &self.crt).await?;
        check_read_back(issued, &leaf, &public_key, &self.crt)
    }

    async fn rollback(&mut self) -> Result<(), DriverError> {
        self.files.restore(&self.ssh).await?;
        if self.committed && self.files.had_previous {
            self.swap_in_file().await?;
        }
        Ok(())
    }

    async fn close(mut self: Box<Self>) {
        self.files.cleanup(&self.ssh).await;
        self.ssh.close().await;
    }

    fn observed_host_key(&self) -> Option<String> {
        self.ssh.observed_host_key()
    }
}

#[cfg(test)]
mod tests {
    use super::shown_serial;

    #[test]
    fn serial_is_read_from_show_ssl_cert() {
        let answer = "Filename: /x/site.pem\nStatus: Used\nSerial: 0FB51BA2F5\nnotBefore: Nov 23\n";
        assert_eq!(shown_serial(answer).as_deref(), Some("0FB51BA2F5"));
        assert_eq!(shown_serial("Unknown command"), None);
    }
}
