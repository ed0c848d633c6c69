//! The API's certificate, hot-swapped: a rustls resolver holding the current key pair and
//! a watcher that re-reads the cert and key files every second. When their content
//! changes and the new pair loads (and matches), new handshakes get it; open connections
//! keep theirs. A half-written or mismatched pair is skipped until it becomes whole, so
//! certfleet can rotate the API's own certificate as a `local` asset.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the files are checked.
pub const POLL: Duration = Duration::from_secs(1);

/// Loads a key pair from PEM bytes; checks that the key matches the leaf.
pub fn load_pair(provider: &CryptoProvider, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key file: {e}"))?;
    let pair = CertifiedKey::from_der(chain, key, provider).map_err(|e| format!("key pair: {e}"))?;
    Ok(pair)
}

/// The resolver: always answers the current pair.
#[derive(Debug)]
pub struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|g| Arc::clone(&g))
    }
}

impl Reloading {
    fn swap(&self, pair: CertifiedKey) {
        if let Ok(mut g) = self.current.write() {
            *g = Arc::new(pair);
        }
    }
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(cert);
    h.update([0u8]);
    h.update(key);
    h.finalize().into()
}

/// A loaded TLS setup: the server config and the resolver behind it.
pub struct Tls {
    /// For the acceptor.
    pub config: Arc<rustls::ServerConfig>,
    resolver: Arc<Reloading>,
    provider: Arc<CryptoProvider>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Tls {
    /// Loads the pair (the key file must be mode 0600) and builds the server config.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cert = std::fs::read(cert_file).map_err(|e| format!("tls_cert_file {}: {e}", cert_file.display()))?;
        let key = certfleet_shared::config::api::read_secret_file(key_file)
            .map_err(|e| format!("tls_key_file {}: {e}", key_file.display()))?;
        let pair = load_pair(&provider, &cert, &key)?;
        let resolver = Arc::new(Reloading { current: RwLock::new(Arc::new(pair)) });
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            resolver,
            provider,
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
        })
    }

    /// Watches the files until `cancel`, swapping in each new whole pair.
    pub async fn watch(self: Arc<Self>, cancel: CancellationToken) {
        let mut last = match (tokio::fs::read(&self.cert_file).await, tokio::fs::read(&self.key_file).await) {
            (Ok(c), Ok(k)) => Some(digest(&c, &k)),
            _ => None,
        };
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
            }
            let (Ok(cert), Ok(key)) = (tokio::fs::read(&self.cert_file).await, tokio::fs::read(&self.key_file).await)
            else {
                continue;
            };
            let d = digest(&cert, &key);
            if last == Some(d) {
                continue;
            }
            match load_pair(&self.provider, &cert, &key) {
                Ok(pair) => {
                    self.resolver.swap(pair);
                    last = Some(d);
                    tracing::info!(cert_file = %self.cert_file.display(), "API certificate reloaded");
                }
                // Probably a rotation half-way through writing: try again next tick.
                Err(e) => tracing::debug!(error = %e, "API certificate files changed but do not load yet"),
            }
        }
    }
}
