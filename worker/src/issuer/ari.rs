//! ACME Renewal Information (RFC 9773): the certificate identifier a CA knows a certificate
//! by, and the renewal window the CA suggests for it. Pure helpers plus one bounded query;
//! the ACME issuer calls them after issuance and passes `replaces` into the next order.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certfleet_proto::RenewalWindow;
use chrono::{DateTime, Utc};
use instant_acme::{Account, CertificateIdentifier, RenewalInfo};
use std::borrow::Cow;
use std::time::Duration;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate that has no ARI identifier.
#[derive(Debug, thiserror::Error)]
pub enum AriError {
    /// The DER does not parse as an X.509 certificate.
    #[error("cannot parse certificate: {0}")]
    Parse(String),
    /// The certificate has no Authority Key Identifier with a `keyIdentifier`.
    #[error("certificate has no authority key identifier (keyIdentifier)")]
    NoAuthorityKeyId,
}

/// The RFC 9773 section 4.1 CertID of a leaf: base64url (no padding) of its AKI
/// `keyIdentifier`, a dot, and base64url of the DER content octets of its serial number
/// (leading zero byte included, as encoded).
pub fn cert_id(leaf_der: &[u8]) -> Result<String, AriError> {
    let (_, cert) = X509Certificate::from_der(leaf_der).map_err(|e| AriError::Parse(e.to_string()))?;
    let aki = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        })
        .ok_or(AriError::NoAuthorityKeyId)?;
    Ok(cert_id_of(aki, cert.raw_serial()))
}

/// The CertID of the AKI `keyIdentifier` bytes and serial DER content bytes.
pub fn cert_id_of(aki_key_identifier: &[u8], serial_der: &[u8]) -> String {
    format!("{}.{}", URL_SAFE_NO_PAD.encode(aki_key_identifier), URL_SAFE_NO_PAD.encode(serial_der))
}

/// The instant-acme form of a CertID string (a job's `replaces`), for
/// `NewOrder::replaces`; `None` when the string is not `<aki>.<serial>`.
pub fn certificate_identifier(cert_id: &str) -> Option<CertificateIdentifier<'static>> {
    let (aki, serial) = cert_id.split_once('.')?;
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (ok(aki) && ok(serial)).then(|| CertificateIdentifier {
        authority_key_identifier: Cow::Owned(aki.to_owned()),
        serial: Cow::Owned(serial.to_owned()),
    })
}

/// Asks the CA for the suggested renewal window of `leaf_der`, within `timeout`. `None` when
/// the CA offers no ARI (its directory has no `renewalInfo`), the leaf has no CertID, or the
/// query fails or times out: the scheduler then falls back to its lifetime fraction, so a
/// failure here never fails a rotation.
pub async fn renewal_window(account: &Account, leaf_der: &[u8], timeout: Duration) -> Option<RenewalWindow> {
    let id = match cert_id(leaf_der) {
        Ok(id) => id,
        Err(e) => {
            tracing::debug!(error = %e, "no ARI identifier for this certificate");
            return None;
        }
    };
    let ident = certificate_identifier(&id)?;
    match tokio::time::timeout(timeout, account.renewal_info(&ident)).await {
        Ok(Ok((info, retry_after))) => {
            let window = window_of(&info);
            if window.is_none() {
                tracing::warn!(cert_id = %id, "CA sent an unusable renewal window; ignoring it");
            }
            tracing::debug!(cert_id = %id, ?retry_after, "renewal information fetched");
            window
        }
        Ok(Err(instant_acme::Error::Unsupported(_))) => {
            tracing::debug!("CA offers no renewal information (no renewalInfo in its directory)");
            None
        }
        Ok(Err(e)) => {
            tracing::warn!(cert_id = %id, error = %e, "renewal information query failed");
            None
        }
        Err(_) => {
            tracing::warn!(cert_id = %id, ?timeout, "renewal information query timed out");
            None
        }
    }
}

/// Converts the CA's answer; `None` when a bound is out of chrono's range.
pub fn window_of(info: &RenewalInfo) -> Option<RenewalWindow> {
    let utc = |t: time::OffsetDateTime| DateTime::<Utc>::from_timestamp(t.unix_timestamp(), t.nanosecond());
    Some(RenewalWindow {
        start: utc(info.suggested_window.start)?,
        end: utc(info.suggested_window.end)?,
        explanation_url: info.explanation_url.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const RFC_AKI: [u8; 20] = [
        0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01,
        0xC8, 0xD4,
    ];
    const RFC_SERIAL: [u8; 5] = [0x00, 0x87, 0x65, 0x43, 0x21];
    const RFC_CERT_ID: &str = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";

    /// A leaf with RFC 9773 section 4.1's AKI and serial, signed by a CA whose subject key
    /// identifier is that AKI.
    fn rfc_leaf() -> Vec<u8> {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(RFC_AKI.to_vec());
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut leaf = rcgen::CertificateParams::new(vec!["a.example.test".to_owned()]).unwrap();
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&RFC_SERIAL[1..]));
        leaf.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().unwrap();
        leaf.signed_by(&key, &issuer).unwrap().der().to_vec()
    }

    #[test]
    fn rfc_9773_example_cert_id() {
        assert_eq!(cert_id_of(&RFC_AKI, &RFC_SERIAL), RFC_CERT_ID);
        let der = rfc_leaf();
        assert_eq!(cert_id(&der).unwrap(), RFC_CERT_ID);
        // instant-acme computes the same identifier from the same certificate.
        let theirs = CertificateIdentifier::try_from(&rustls::pki_types::CertificateDer::from(der)).unwrap();
        assert_eq!(theirs.to_string(), RFC_CERT_ID);
    }

    #[test]
    fn leaves_without_aki_or_garbage_have_no_id() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.example.test".to_owned()]).unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert!(matches!(cert_id(&der), Err(AriError::NoAuthorityKeyId)));
        assert!(matches!(cert_id(b"not a certificate"), Err(AriError::Parse(_))));
    }

    #[test]
    fn replaces_strings_round_trip_into_instant_acme() {
        let ident = certificate_identifier(RFC_CERT_ID).unwrap();
        assert_eq!(ident.to_string(), RFC_CERT_ID);
        for bad in ["", "nodot", ".AIdlQyE", "aYhb.", "a.b.c", "a b.c"] {
            assert!(certificate_identifier(bad).is_none(), "{bad:?}");
        }
    }

    /// RFC 9773 section 4.2's example response body.
    #[test]
    fn rfc_9773_example_window_converts() {
        let body = r#"{
            "suggestedWindow": {"start": "2025-01-02T04:00:00Z", "end": "2025-01-03T04:00:00Z"},
            "explanationURL": "https://acme.example.com/docs/ari"
        }"#;
        let info: RenewalInfo = serde_json::from_str(body).unwrap();
        let w = window_of(&info).unwrap();
        assert_eq!(w.start, Utc.with_ymd_and_hms(2025, 1, 2, 4, 0, 0).unwrap());
        assert_eq!(w.end, Utc.with_ymd_and_hms(2025, 1, 3, 4, 0, 0).unwrap());
        assert_eq!(w.explanation_url.as_deref(), Some("https://acme.example.com/docs/ari"));
    }
}
