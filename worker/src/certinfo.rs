//! Reading certificates back: facts for the inventory, and checks that a chain and a key
//! belong together.

use certfleet_proto::CertificateInfo;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable certificate: {0}")]
pub struct CertError(pub String);

/// Splits a PEM bundle into DER certificates, in order.
pub fn pem_chain_to_der(pem: &str) -> Result<Vec<Vec<u8>>, CertError> {
    let mut out = Vec::new();
    for item in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let item = item.map_err(|e| CertError(e.to_string()))?;
        if item.label == "CERTIFICATE" {
            out.push(item.contents);
        }
    }
    if out.is_empty() {
        return Err(CertError("no CERTIFICATE block found".into()));
    }
    Ok(out)
}

/// DER to PEM.
pub fn der_to_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn to_utc(t: x509_parser::time::ASN1Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or_default()
}

/// Facts about a DER certificate, as recorded in the inventory.
pub fn describe(der: &[u8]) -> Result<CertificateInfo, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError(e.to_string()))?;
    Ok(CertificateInfo {
        serial: hex::encode(cert.raw_serial()),
        sha256_fingerprint: hex::encode(Sha256::digest(der)),
        not_before: to_utc(cert.validity().not_before),
        not_after: to_utc(cert.validity().not_after),
        issuer: cert.issuer().to_string(),
        // Filled in by an ACME issuer whose CA offers renewal information.
        ari_cert_id: None,
        renewal_window: None,
    })
}

/// The subject of a DER certificate, as a distinguished name string.
pub fn subject(der: &[u8]) -> Result<String, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError(e.to_string()))?;
    Ok(cert.subject().to_string())
}

/// The public key bits of a certificate (the BIT STRING inside its SubjectPublicKeyInfo),
/// comparable with `rcgen::PublicKeyData::der_bytes` of a key pair or a CSR.
pub fn public_key_bits(der: &[u8]) -> Result<Vec<u8>, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError(e.to_string()))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// The one CSR in `text` (a device's output), as DER. Refuses text that holds a private
/// key or several CSRs; never echoes the text.
pub fn csr_pem_to_der(text: &str) -> Result<Vec<u8>, CertError> {
    let blocks = pem::parse_many(text).map_err(|_| CertError("the CSR is not valid PEM".into()))?;
    if blocks.iter().any(|b| b.tag().contains("PRIVATE KEY")) {
        return Err(CertError("a private key was printed with the CSR; refusing it".into()));
    }
    let mut csrs =
        blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE REQUEST" || b.tag() == "NEW CERTIFICATE REQUEST");
    match (csrs.next(), csrs.next()) {
        (Some(csr), None) => Ok(csr.into_contents()),
        (None, _) => Err(CertError("no CSR found".into())),
        (Some(_), Some(_)) => Err(CertError("more than one CSR found".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_describe() {
        let cert = rcgen::generate_simple_self_signed(vec!["x.test".into()]).unwrap();
        let pem = der_to_pem(cert.cert.der());
        let ders = pem_chain_to_der(&format!("{pem}{pem}")).unwrap();
        assert_eq!(ders.len(), 2);
        assert_eq!(ders[0], cert.cert.der().to_vec());
        let info = describe(&ders[0]).unwrap();
        assert_eq!(info.sha256_fingerprint.len(), 64);
        assert!(info.not_after > info.not_before);
        assert!(pem_chain_to_der("nothing here").is_err());
    }
}
