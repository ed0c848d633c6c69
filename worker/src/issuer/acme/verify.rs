//! Checks around an ACME order: the device's CSR asks for exactly the job's names (all DNS
//! names: DNS-01 cannot validate IP addresses), and the certificate the CA returns carries
//! the CSR's public key, covers every name, and comes from the expected issuer.

use crate::certinfo;
use crate::issuer::{Issued, IssuerError};
use certfleet_proto::RotationJob;
use std::collections::BTreeSet;
use std::net::IpAddr;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// What the order needs from the CSR.
#[derive(Debug)]
pub(crate) struct CheckedCsr {
    /// The names to order, lower case (wildcards keep their `*.`).
    pub names: BTreeSet<String>,
    /// The public key bits the leaf must carry.
    pub public_key: Vec<u8>,
}

/// The job's names: common name plus SANs, lower case.
fn job_names(job: &RotationJob) -> BTreeSet<String> {
    let mut names: BTreeSet<String> =
        job.subject_alternative_names.iter().map(|s| s.trim().to_ascii_lowercase()).collect();
    names.insert(job.common_name.trim().to_ascii_lowercase());
    names
}

/// Reads the CSR and checks it asks for exactly the job's names.
pub(crate) fn check_csr(csr_der: &[u8], job: &RotationJob) -> Result<CheckedCsr, IssuerError> {
    let (_, csr) = X509CertificationRequest::from_der(csr_der).map_err(|e| IssuerError::BadCsr(e.to_string()))?;
    let info = &csr.certification_request_info;
    let mut names = BTreeSet::new();
    for cn in info.subject.iter_common_name() {
        let cn = cn.as_str().map_err(|e| IssuerError::BadCsr(format!("common name: {e}")))?;
        names.insert(cn.to_ascii_lowercase());
    }
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(n) => names.insert(n.to_ascii_lowercase()),
                    other => return Err(IssuerError::BadCsr(format!("ACME DNS-01 cannot validate SAN {other}"))),
                };
            }
        }
    }
    let wanted = job_names(job);
    if let Some(ip) = wanted.iter().find(|n| n.parse::<IpAddr>().is_ok()) {
        return Err(IssuerError::BadCsr(format!("ACME DNS-01 cannot validate the IP address {ip}")));
    }
    if names != wanted {
        let extra: Vec<_> = names.difference(&wanted).collect();
        let missing: Vec<_> = wanted.difference(&names).collect();
        return Err(IssuerError::BadCsr(format!(
            "CSR names differ from the asset's: not asked for [{}], missing [{}]",
            extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let public_key = info.subject_pki.subject_public_key.data.to_vec();
    Ok(CheckedCsr { names, public_key })
}

/// Checks the CA's chain (leaf first) against the request and describes the leaf.
pub(crate) fn check_issued(
    chain_pem: String,
    csr: &CheckedCsr,
    expected_issuer: Option<&str>,
) -> Result<Issued, IssuerError> {
    let bad = |why: String| IssuerError::Rejected(format!("the CA's certificate is unusable: {why}"));
    let ders = certinfo::pem_chain_to_der(&chain_pem).map_err(|e| bad(e.to_string()))?;
    let leaf_der = ders.into_iter().next().ok_or_else(|| bad("empty chain".into()))?;
    let (_, leaf) = X509Certificate::from_der(&leaf_der).map_err(|e| bad(e.to_string()))?;
    if leaf.public_key().subject_public_key.data.as_ref() != csr.public_key.as_slice() {
        return Err(bad("its public key is not the CSR's".into()));
    }
    let san = leaf.subject_alternative_name().map_err(|e| bad(e.to_string()))?;
    let covered: BTreeSet<String> = san
        .map(|s| s.value.general_names.iter())
        .into_iter()
        .flatten()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    if let Some(missing) = csr.names.iter().find(|n| !covered.contains(*n)) {
        return Err(bad(format!("it does not cover {missing}")));
    }
    let info = certinfo::describe(&leaf_der).map_err(|e| bad(e.to_string()))?;
    if let Some(expected) = expected_issuer
        && !info.issuer.contains(expected)
    {
        return Err(bad(format!("issuer {:?} does not contain expected_issuer {expected:?}", info.issuer)));
    }
    let chain_pem = if chain_pem.ends_with('\n') { chain_pem } else { format!("{chain_pem}\n") };
    Ok(Issued { chain_pem, leaf_der, info })
}

#[cfg(test)]
mod tests {
    use super::*;
    use certfleet_proto::KeyAlgorithm;
    use rcgen::{CertificateParams, DnType, Issuer, KeyPair};

    fn job(cn: &str, sans: &[&str]) -> RotationJob {
        serde_json::from_value(serde_json::json!({
            "job_id": uuid::Uuid::new_v4(), "attempt": 1, "asset_id": 1, "system_name": "x", "driver": "local",
            "issuer": "acme", "common_name": cn, "subject_alternative_names": sans, "ip_address": null,
            "port": null, "key_algorithm": "ecdsa-p256", "certificate_validation": false, "settings": {},
            "not_before": null, "published_at": chrono::Utc::now(),
        }))
        .unwrap()
    }

    fn csr(cn: &str, sans: &[&str]) -> (KeyPair, Vec<u8>) {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let k = crate::keygen::generate(KeyAlgorithm::EcdsaP256, cn, &sans).unwrap();
        (k.key, k.csr_der)
    }

    #[test]
    fn csr_must_ask_for_exactly_the_job_names() {
        let (_, der) = csr("a.test", &["a.test", "*.a.test"]);
        let checked = check_csr(&der, &job("a.test", &["*.a.test"])).unwrap();
        assert_eq!(checked.names.len(), 2);
        let err = check_csr(&der, &job("a.test", &["b.test"])).unwrap_err().to_string();
        assert!(err.contains("b.test") && err.contains("*.a.test"), "{err}");
        let (_, der) = csr("a.test", &["a.test", "127.0.0.1"]);
        assert!(matches!(check_csr(&der, &job("a.test", &["127.0.0.1"])), Err(IssuerError::BadCsr(_))));
        assert!(matches!(check_csr(b"junk", &job("a.test", &[])), Err(IssuerError::BadCsr(_))));
    }

    #[test]
    fn leaf_must_match_key_names_and_issuer() {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "Pebble Intermediate CA 1234");
        let issuer = Issuer::new(ca, ca_key);
        let (key, der) = csr("a.test", &["a.test", "b.test"]);
        let checked = check_csr(&der, &job("a.test", &["b.test"])).unwrap();
        let leaf = |names: Vec<String>, key: &KeyPair| {
            let p = CertificateParams::new(names).unwrap();
            p.signed_by(key, &issuer).unwrap().pem()
        };
        let good = leaf(vec!["a.test".into(), "b.test".into()], &key);
        let issued = check_issued(good.clone(), &checked, Some("Pebble Intermediate")).unwrap();
        assert!(issued.info.issuer.contains("Pebble"));
        assert!(
            check_issued(good, &checked, Some("Let's Encrypt")).unwrap_err().to_string().contains("expected_issuer")
        );
        let narrow = leaf(vec!["a.test".into()], &key);
        assert!(check_issued(narrow, &checked, None).unwrap_err().to_string().contains("b.test"));
        let other = leaf(vec!["a.test".into(), "b.test".into()], &KeyPair::generate().unwrap());
        assert!(check_issued(other, &checked, None).unwrap_err().to_string().contains("public key"));
    }
}
