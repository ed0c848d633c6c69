//! Real TLS handshakes on 127.0.0.1 against an in-process rustls server.

use super::*;
use crate::issuer::Issuer as _;
use crate::issuer::internal::InternalCa;
use certfleet_proto::{AssetId, Driver, JobId, KeyAlgorithm};
use certfleet_shared::config::InternalIssuerConfig;
use rustls::pki_types::PrivateKeyDer;

fn job(cn: &str, sans: &[&str]) -> RotationJob {
    RotationJob {
        job_id: JobId::new(),
        attempt: 1,
        asset_id: AssetId(1),
        system_name: "t".into(),
        driver: Driver::Local,
        issuer: "internal".into(),
        common_name: cn.into(),
        subject_alternative_names: sans.iter().map(|s| (*s).to_owned()).collect(),
        ip_address: Some("127.0.0.1".into()),
        port: None,
        key_algorithm: KeyAlgorithm::EcdsaP256,
        certificate_validation: true,
        settings: serde_json::json!({}),
        not_before: None,
        published_at: chrono::Utc::now(),
        replaces: None,
    }
}

/// Issues a certificate for `names` from a fresh internal CA; returns it with its key.
async fn issue(ca: &InternalCa, job: &RotationJob, names: &[&str]) -> (Issued, rcgen::KeyPair) {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let made = crate::keygen::generate(KeyAlgorithm::EcdsaP256, &job.common_name, &names).unwrap();
    let mut signing_job = job.clone();
    signing_job.subject_alternative_names = names;
    (ca.sign(&made.csr_der, &signing_job).await.unwrap(), made.key)
}

/// Serves `issued` with `key` on 127.0.0.1:0 for a few handshakes; returns the port.
async fn serve(issued: &Issued, key: &rcgen::KeyPair) -> u16 {
    let chain = vec![CertificateDer::from(issued.leaf_der.clone())];
    let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((tcp, _)) = listener.accept().await else { return };
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                use tokio::io::AsyncWriteExt as _;
                let _ = tls.shutdown().await;
            }
        }
    });
    port
}

async fn new_ca() -> (InternalCa, tempfile::TempDir) {
    named_ca("certfleet internal root").await
}

async fn named_ca(root_common_name: &str) -> (InternalCa, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = InternalIssuerConfig {
        ca_dir: dir.path().to_owned(),
        root_common_name: root_common_name.into(),
        ..InternalIssuerConfig::default()
    };
    (InternalCa::load_or_create(&config).await.unwrap(), dir)
}

#[tokio::test]
async fn the_new_certificate_passes_and_an_old_one_does_not() {
    let (ca, _dir) = new_ca().await;
    let mut j = job("svc.test", &["svc.test", "alt.svc.test", "127.0.0.1"]);
    let (new, new_key) = issue(&ca, &j, &["svc.test", "alt.svc.test", "127.0.0.1"]).await;
    j.port = Some(serve(&new, &new_key).await);
    validate_served(&j, &new, Duration::from_secs(5)).await.unwrap();

    // The device still serves the previous certificate (same names, other key and expiry).
    let (old, old_key) = issue(&ca, &j, &["svc.test", "alt.svc.test", "127.0.0.1"]).await;
    j.port = Some(serve(&old, &old_key).await);
    let err = validate_served(&j, &new, Duration::from_secs(5)).await.unwrap_err().to_string();
    assert!(err.contains("notAfter") || err.contains("public key"), "{err}");
}

#[tokio::test]
async fn missing_sans_and_foreign_issuers_are_named() {
    let (ca, _dir) = new_ca().await;
    let mut j = job("svc.test", &["svc.test", "other.test"]);
    let (narrow, key) = issue(&ca, &j, &["svc.test"]).await;
    j.port = Some(serve(&narrow, &key).await);
    let err = validate_served(&j, &narrow, Duration::from_secs(5)).await.unwrap_err().to_string();
    assert!(err.contains("SANs do not cover other.test"), "{err}");

    let (other_ca, _d2) = named_ca("some other root").await;
    let (foreign, fkey) = issue(&other_ca, &j, &["svc.test", "other.test"]).await;
    let (expected, _) = issue(&ca, &j, &["svc.test", "other.test"]).await;
    j.port = Some(serve(&foreign, &fkey).await);
    let err = validate_served(&j, &expected, Duration::from_secs(5)).await.unwrap_err().to_string();
    assert!(err.contains("issuer is CN=some other root"), "{err}");
}

#[tokio::test]
async fn nothing_listening_is_unreachable_within_the_timeout() {
    let (ca, _dir) = new_ca().await;
    let mut j = job("svc.test", &[]);
    let (issued, _) = issue(&ca, &j, &["svc.test"]).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    j.port = Some(closed);
    let err = validate_served(&j, &issued, Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, ValidateError::Unreachable { .. }), "{err}");
    j.port = None;
    validate_served(&j, &issued, Duration::from_secs(5)).await.unwrap();
}
