//! Step 5 of the rotation contract: connect over TLS to the device's service with SNI set
//! to the common name, read the chain it serves, and check it is the new certificate: the
//! expected issuer, the new notAfter, SANs covering the request, and the CSR's public key.
//!
//! The device's current certificate is not trusted for this connection (it is what is being
//! checked); the handshake signature is still verified, so the server proves it holds the
//! private key of the certificate it presents.

use crate::issuer::Issued;
use certfleet_proto::RotationJob;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Why the served certificate is not the new one.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The service could not be reached or the handshake failed.
    #[error("TLS validation: cannot reach {addr}: {reason}")]
    Unreachable {
        /// `host:port`.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The service serves something other than the new certificate.
    #[error("TLS validation: {addr} serves a certificate whose {what}")]
    Mismatch {
        /// `host:port`.
        addr: String,
        /// What differs.
        what: String,
    },
}

/// Accepts whatever certificate is presented (it is compared afterwards), but still checks
/// the handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct CompareAfterwards(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for CompareAfterwards {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A client config that accepts any server certificate but checks the handshake signatures.
pub(crate) fn client_config() -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(CompareAfterwards(provider.signature_verification_algorithms));
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Handshakes with `host:port` (SNI `sni`) and returns the served chain, leaf first.
pub async fn served_chain(host: &str, port: u16, sni: &str, timeout: Duration) -> Result<Vec<Vec<u8>>, ValidateError> {
    let addr = format!("{host}:{port}");
    let fail = |reason: String| ValidateError::Unreachable { addr: addr.clone(), reason };
    let config = client_config().map_err(|e| fail(e.to_string()))?;
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| fail(format!("SNI {sni:?}: {e}")))?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| fail(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
        Ok(certs.iter().map(|c| c.as_ref().to_vec()).collect::<Vec<_>>())
    };
    let chain =
        tokio::time::timeout(timeout, handshake).await.map_err(|_| fail(format!("timed out after {timeout:?}")))??;
    if chain.is_empty() {
        return Err(fail("no certificate was served".into()));
    }
    Ok(chain)
}

fn san_set(cert: &X509Certificate<'_>) -> BTreeSet<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else { return BTreeSet::new() };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b).ok().map(|a| IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b).ok().map(|a| IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Checks the served chain against the certificate just issued for `job`.
pub fn check(addr: &str, served: &[Vec<u8>], issued: &Issued, job: &RotationJob) -> Result<(), ValidateError> {
    let mismatch = |what: String| ValidateError::Mismatch { addr: addr.to_owned(), what };
    let first = served.first().ok_or_else(|| mismatch("no certificate was served".into()))?;
    let (_, leaf) = X509Certificate::from_der(first).map_err(|e| mismatch(format!("leaf does not parse: {e}")))?;
    let (_, new) = X509Certificate::from_der(&issued.leaf_der).map_err(|e| mismatch(format!("issued leaf: {e}")))?;
    if leaf.issuer().as_raw() != new.issuer().as_raw() {
        return Err(mismatch(format!("issuer is {} instead of {}", leaf.issuer(), new.issuer())));
    }
    if leaf.validity().not_after != new.validity().not_after {
        return Err(mismatch(format!(
            "notAfter is {} instead of {}",
            leaf.validity().not_after,
            new.validity().not_after
        )));
    }
    let served_sans = san_set(&leaf);
    let wanted = std::iter::once(&job.common_name).chain(&job.subject_alternative_names);
    let missing: Vec<String> = wanted.map(|n| n.to_ascii_lowercase()).filter(|n| !served_sans.contains(n)).collect();
    if !missing.is_empty() {
        return Err(mismatch(format!("SANs do not cover {}", missing.join(", "))));
    }
    if leaf.public_key().raw != new.public_key().raw {
        return Err(mismatch("public key is not the one the device generated for this rotation".into()));
    }
    Ok(())
}

/// Connects and checks in one call, for drivers whose asset has `ip_address` and `port`.
pub async fn validate_served(job: &RotationJob, issued: &Issued, timeout: Duration) -> Result<(), ValidateError> {
    let (Some(host), Some(port)) = (job.ip_address.as_deref(), job.port) else { return Ok(()) };
    let served = served_chain(host, port, &job.common_name, timeout).await?;
    check(&format!("{host}:{port}"), &served, issued, job)
}

#[cfg(test)]
mod tests;
