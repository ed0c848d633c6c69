//! One way to make an HTTPS client: rustls with the aws-lc-rs provider (never the
//! process-wide default, which a library must not rely on), the system's roots plus any
//! extra PEM roots, and a timeout on every request.

use std::sync::Arc;
use std::time::Duration;

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// The extra roots are not PEM certificates.
    #[error("{0}")]
    Roots(String),
    /// TLS or client setup failed.
    #[error("setting up the HTTPS client failed: {0}")]
    Setup(String),
}

/// A client trusting the system's roots and every certificate in `extra_roots_pem`, with
/// `timeout` on connecting and on each whole request. Redirects are not followed (a URL
/// may be a secret, and no peer of certfleet redirects).
pub fn client(timeout: Duration, extra_roots_pem: Option<&[u8]>) -> Result<reqwest::Client, HttpClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(pem) = extra_roots_pem {
        let mut added = 0;
        for der in CertificateDer::pem_slice_iter(pem) {
            let der = der.map_err(|e| HttpClientError::Roots(format!("not a PEM certificate: {e}")))?;
            roots.add(der).map_err(|e| HttpClientError::Roots(format!("unusable certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(HttpClientError::Roots("holds no PEM certificate".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpClientError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("certfleet/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| HttpClientError::Setup(e.without_url().to_string()))
}
