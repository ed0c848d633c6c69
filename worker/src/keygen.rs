//! Key pairs and CSRs, made where the private key is meant to live.

use certfleet_proto::KeyAlgorithm;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, RsaKeySize};

/// A key pair plus the CSR for it. The private key stays in this value until the driver
/// writes it to the device; it is never logged, sent or stored elsewhere.
pub struct KeyAndCsr {
    /// The private key.
    pub key: KeyPair,
    /// DER-encoded PKCS#10 request.
    pub csr_der: Vec<u8>,
}

/// Key generation or CSR encoding failed.
#[derive(Debug, thiserror::Error)]
#[error("generating the {algorithm} key or CSR failed: {reason}")]
pub struct KeygenError {
    /// Requested algorithm.
    pub algorithm: KeyAlgorithm,
    /// rcgen's error text (never key material).
    pub reason: String,
}

/// A fresh key pair. CPU-heavy for RSA: call it from `spawn_blocking`.
pub fn key_pair(algorithm: KeyAlgorithm) -> Result<KeyPair, KeygenError> {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyAlgorithm::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyAlgorithm::Rsa4096 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096),
    }
    .map_err(|e| KeygenError { algorithm, reason: e.to_string() })
}

/// Generates a fresh key of `algorithm` and a CSR for `common_name` and `sans`.
/// CPU-heavy for RSA: call it from `spawn_blocking`.
pub fn generate(algorithm: KeyAlgorithm, common_name: &str, sans: &[String]) -> Result<KeyAndCsr, KeygenError> {
    let fail = |e: rcgen::Error| KeygenError { algorithm, reason: e.to_string() };
    let key = key_pair(algorithm)?;
    let mut names: Vec<String> = sans.to_vec();
    if !names.iter().any(|n| n == common_name) {
        names.insert(0, common_name.to_owned());
    }
    let mut params = CertificateParams::new(names).map_err(fail)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).map_err(fail)?;
    Ok(KeyAndCsr { csr_der: csr.der().to_vec(), key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    #[test]
    fn csr_carries_cn_and_sans_and_is_signed_by_the_key() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Rsa2048] {
            let out = generate(alg, "a.example.test", &["b.example.test".into(), "10.1.2.3".into()]).unwrap();
            let parsed = rcgen::CertificateSigningRequestParams::from_der(&out.csr_der.as_slice().into()).unwrap();
            assert_eq!(parsed.params.subject_alt_names.len(), 3, "{alg}");
            assert_eq!(parsed.public_key.der_bytes(), out.key.der_bytes(), "{alg}: CSR key differs");
        }
    }
}
