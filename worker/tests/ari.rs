//! ACME Renewal Information through instant-acme's ARI support.
//!
//! Pebble 2.4 (the ACME CA that runs here) has no ARI, so the "CA has no ARI" case runs
//! against the real Pebble of `scripts/stack/up.sh`. The "CA offers ARI" cases run against a
//! local HTTPS fixture that answers like RFC 9773 describes (a directory with `renewalInfo`,
//! `GET <renewalInfo>/<CertID>` answered with section 4.2's example body and `Retry-After`):
//! no CA with ARI can run here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

mod common;

use common::stack::Stack;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certfleet_worker::issuer::ari;
use chrono::{TimeZone, Utc};
use instant_acme::{Account, NewAccount};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// A CA (with a subject key id, so its leaves carry an AKI) and a leaf it signed.
struct Pki {
    ca_pem: String,
    server_cert: rustls::pki_types::CertificateDer<'static>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
    leaf_der: Vec<u8>,
}

fn pki() -> Pki {
    // instant-acme's clients use the process-wide rustls provider, as the worker binary sets it.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "ari fixture CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["www.certfleet.test".to_owned()]).unwrap();
    leaf.use_authority_key_identifier_extension = true;
    let leaf_der = leaf.signed_by(&leaf_key, &issuer).unwrap().der().to_vec();
    Pki {
        ca_pem: ca_cert.pem(),
        server_cert: server_cert.der().clone(),
        server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        leaf_der,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Offered,
    Absent,
    Silent,
}

/// An HTTPS ACME fixture: directory plus the renewalInfo endpoint. Records request paths.
struct Fixture {
    base: String,
    ca_file: tempfile::NamedTempFile,
    paths: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fixture {
    async fn start(pki: &Pki, mode: Mode) -> Fixture {
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![pki.server_cert.clone()], pki.server_key.clone_key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}", listener.local_addr().unwrap());
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (seen, b) = (paths.clone(), base.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen, base) = (acceptor.clone(), seen.clone(), b.clone());
                tokio::spawn(async move {
                    let Ok(mut conn) = acceptor.accept(tcp).await else { return };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 2048];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    seen.lock().unwrap().push(path.clone());
                    let (status, extra, body) = answer(&base, &path, mode).await;
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                         Connection: close\r\n{extra}\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        let ca_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca_file.path(), &pki.ca_pem).unwrap();
        Fixture { base, ca_file, paths, task }
    }

    /// An account restored from credentials: instant-acme fetches this fixture's directory.
    async fn account(&self) -> Account {
        let key = rcgen::KeyPair::generate().unwrap();
        let creds = json!({
            "id": format!("{}/acct/1", self.base),
            "key_pkcs8": URL_SAFE_NO_PAD.encode(key.serialize_der()),
            "directory": format!("{}/dir", self.base),
        });
        let builder = Account::builder_with_root(self.ca_file.path()).unwrap();
        builder.from_credentials(serde_json::from_value(creds).unwrap()).await.unwrap()
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

async fn answer(base: &str, path: &str, mode: Mode) -> (u16, String, String) {
    if path == "/dir" {
        let mut dir = json!({
            "newNonce": format!("{base}/nonce"),
            "newAccount": format!("{base}/new-acct"),
            "newOrder": format!("{base}/new-order"),
        });
        if mode != Mode::Absent {
            dir["renewalInfo"] = json!(format!("{base}/ari"));
        }
        return (200, String::new(), dir.to_string());
    }
    if path.starts_with("/ari/") {
        if mode == Mode::Silent {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        // RFC 9773 section 4.2's example.
        let body = json!({
            "suggestedWindow": {"start": "2025-01-02T04:00:00Z", "end": "2025-01-03T04:00:00Z"},
            "explanationURL": "https://acme.example.com/docs/ari"
        });
        return (200, "Retry-After: 21600\r\n".into(), body.to_string());
    }
    (404, String::new(), "{}".into())
}

#[tokio::test]
async fn a_ca_with_ari_is_asked_by_cert_id_and_its_window_returned() {
    let pki = pki();
    let fixture = Fixture::start(&pki, Mode::Offered).await;
    let account = fixture.account().await;
    let window = ari::renewal_window(&account, &pki.leaf_der, Duration::from_secs(5)).await.unwrap();
    assert_eq!(window.start, Utc.with_ymd_and_hms(2025, 1, 2, 4, 0, 0).unwrap());
    assert_eq!(window.end, Utc.with_ymd_and_hms(2025, 1, 3, 4, 0, 0).unwrap());
    assert_eq!(window.explanation_url.as_deref(), Some("https://acme.example.com/docs/ari"));
    let id = ari::cert_id(&pki.leaf_der).unwrap();
    assert_eq!(fixture.paths(), vec!["/dir".to_owned(), format!("/ari/{id}")]);
}

#[tokio::test]
async fn a_directory_without_renewal_info_means_none_without_asking() {
    let pki = pki();
    let fixture = Fixture::start(&pki, Mode::Absent).await;
    let account = fixture.account().await;
    assert_eq!(ari::renewal_window(&account, &pki.leaf_der, Duration::from_secs(5)).await, None);
    assert_eq!(fixture.paths(), vec!["/dir".to_owned()]);
}

#[tokio::test]
async fn a_silent_ari_endpoint_times_out_to_none() {
    let pki = pki();
    let fixture = Fixture::start(&pki, Mode::Silent).await;
    let account = fixture.account().await;
    let started = Instant::now();
    assert_eq!(ari::renewal_window(&account, &pki.leaf_der, Duration::from_millis(500)).await, None);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

/// Pebble 2.4 advertises no `renewalInfo`: instant-acme says so, and the helper answers None
/// (the scheduler then keeps using the lifetime fraction).
#[tokio::test]
async fn pebble_has_no_ari_so_the_window_is_none() {
    let stack = Stack::start();
    let builder = Account::builder_with_root(stack.get("PEBBLE_CA_BUNDLE")).unwrap();
    let new = NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false };
    let (account, _) = builder.create(&new, stack.get("PEBBLE_DIRECTORY_URL").to_owned(), None).await.unwrap();
    let pki = pki();
    let ident = ari::certificate_identifier(&ari::cert_id(&pki.leaf_der).unwrap()).unwrap();
    let err = account.renewal_info(&ident).await.unwrap_err();
    assert!(matches!(err, instant_acme::Error::Unsupported(_)), "{err}");
    assert_eq!(ari::renewal_window(&account, &pki.leaf_der, Duration::from_secs(5)).await, None);
}
