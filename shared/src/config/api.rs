//! `[api]`: the control-plane HTTP API and dashboard (`certfleet-api`, also started by
//! `certfleet up`).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the HTTP API and dashboard.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the API listens on. A non-loopback address needs TLS (or `allow_plain_http`).
    pub listen: SocketAddr,
    /// PEM certificate chain served by the API (HTTPS when set). Reloaded when the file
    /// changes, so certfleet itself can rotate it as a `local` asset.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file` (mode 0600).
    pub tls_key_file: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy only).
    pub allow_plain_http: bool,
    /// Key that signs session tokens (mode 0600). Unset: a random key per process start,
    /// so tokens do not survive a restart.
    pub token_signing_key_file: Option<PathBuf>,
    /// Lifetime of a token from `POST /user/v1/authenticate`.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// The URL users reach the API and dashboard at (links in notifications and the CLI).
    pub public_url: Option<String>,
    /// Link template for a trace id in the dashboard, for example
    /// `https://tracing.example/trace/{trace_id}`.
    pub trace_url_template: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert_file: None,
            tls_key_file: None,
            allow_plain_http: false,
            token_signing_key_file: None,
            token_ttl: Duration::from_secs(30 * 60),
            public_url: None,
            trace_url_template: None,
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

impl ApiConfig {
    /// The base URL for links: `public_url`, or the listen address.
    pub fn base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.tls_cert_file.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", self.listen)
            }
        }
    }
}

/// Reads a secret file (the token signing key, the TLS key): it must be a regular file
/// that neither group nor others can read or write (mode 0600 or stricter).
pub fn read_secret_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!("has mode {mode:o}; it must be 0600 (chmod 600 {})", path.display()));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::read_secret_file;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn secret_files_must_be_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, b"secret").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_secret_file(&p).unwrap_err().contains("0600"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&p).unwrap(), b"secret");
        assert!(read_secret_file(dir.path()).is_err());
    }
}
