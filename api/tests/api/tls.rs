//! HTTPS with a hot-swapped certificate: a client loop handshaking anew on every request
//! sees no failure while the cert and key files are replaced (as certfleet's `local`
//! driver replaces them), new handshakes get the new certificate, and a connection opened
//! before the swap keeps working.

use crate::common::{Backend, Server};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

fn ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "api test CA");
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { der: cert.der().clone(), issuer: Issuer::new(params, key) }
}

/// A leaf for 127.0.0.1 and localhost: (chain PEM, key PEM, DER).
fn leaf(ca: &Ca, serial: u64) -> (String, String, Vec<u8>) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.serial_number = Some(serial.into());
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

fn write_pair(cert_file: &Path, key_file: &Path, cert: &str, key: &str) {
    // Like the local driver: temp file + rename, key mode 0600.
    let tmp_key = key_file.with_extension("tmp");
    std::fs::write(&tmp_key, key).unwrap();
    std::fs::set_permissions(&tmp_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp_key, key_file).unwrap();
    let tmp_cert = cert_file.with_extension("tmp");
    std::fs::write(&tmp_cert, cert).unwrap();
    std::fs::rename(&tmp_cert, cert_file).unwrap();
}

fn client_config(ca: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every handshake is a full one, so it shows the certificate served now (a resumed
    // session would report the one of the session it resumes).
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(cfg: &Arc<rustls::ClientConfig>, addr: &str) -> (Stream, Vec<u8>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp).await.unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    (tls, served)
}

/// One keep-alive request on an open stream: Ok when it answered 200, else what went wrong.
async fn get_healthz(stream: &mut Stream) -> Result<(), String> {
    let req = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n";
    stream.write_all(req).await.map_err(|e| format!("write: {e}"))?;
    // A TLS stream may keep written bytes in its buffer (when the socket, or the task's
    // cooperative budget, says "not now"): only a flush makes sure the request is sent.
    stream.flush().await.map_err(|e| format!("flush: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(15).any(|w| w == b"{\"status\":\"ok\"}") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(Ok(_)) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&buf))),
            Ok(Err(e)) => return Err(format!("read after {} bytes: {e}", buf.len())),
            Err(_) => return Err(format!("no answer in 10 s after {:?}", String::from_utf8_lossy(&buf))),
        }
    }
    if buf.starts_with(b"HTTP/1.1 200") { Ok(()) } else { Err(format!("answered {:?}", String::from_utf8_lossy(&buf))) }
}

async fn certificate_hot_swap_under_a_client_loop(backend: Backend) {
    let authority = ca();
    let (cert_a, key_a, der_a) = leaf(&authority, 1001);
    let (cert_b, key_b, der_b) = leaf(&authority, 2002);
    let files = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (files.path().join("api.crt"), files.path().join("api.key"));
    write_pair(&cert_file, &key_file, &cert_a, &key_a);
    let (cf, kf) = (cert_file.clone(), key_file.clone());
    let s = Server::start_with(backend, move |c| {
        c.api.tls_cert_file = Some(cf);
        c.api.tls_key_file = Some(kf);
    })
    .await;
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let addr = s.base.trim_start_matches("https://").to_owned();
    let cfg = client_config(&authority.der);

    let (mut old, served) = connect(&cfg, &addr).await;
    assert_eq!(served, der_a);
    get_healthz(&mut old).await.unwrap();

    let requests = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(tokio::sync::Mutex::new(Vec::<String>::new()));
    let saw_b = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let looping = {
        let (cfg, addr, requests, failures, saw_b, stop) =
            (cfg.clone(), addr.clone(), requests.clone(), failures.clone(), saw_b.clone(), stop.clone());
        let (der_a, der_b) = (der_a.clone(), der_b.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let (mut stream, served) = connect(&cfg, &addr).await;
                assert!(served == der_a || served == der_b, "served an unknown certificate");
                if served == der_b {
                    saw_b.fetch_add(1, Ordering::SeqCst);
                }
                requests.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = get_healthz(&mut stream).await {
                    let on = if served == der_b { "new" } else { "old" };
                    let n = requests.load(Ordering::SeqCst);
                    failures.lock().await.push(format!("request {n} on the {on} certificate: {e}"));
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while requests.load(Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "the client loop does not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write_pair(&cert_file, &key_file, &cert_b, &key_b);
    while saw_b.load(Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    looping.await.unwrap();
    // The connection opened before the swap is still served, with its certificate.
    if let Err(e) = get_healthz(&mut old).await {
        panic!("the connection opened before the swap was dropped by it: {e}");
    }
    assert_eq!(old.get_ref().1.peer_certificates().unwrap()[0].to_vec(), der_a);
    let total = requests.load(Ordering::SeqCst);
    let failures = failures.lock().await.clone();
    println!(
        "hot swap: {total} requests, {} on the new certificate, {} failed",
        saw_b.load(Ordering::SeqCst),
        failures.len()
    );
    assert!(failures.is_empty(), "failed requests across the swap: {failures:#?}");
    drop(old);
    s.stop().await;
}

#[tokio::test]
async fn plain_http_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = certfleet_shared::Config {
        database_url: format!("sqlite://{}/x.db?mode=rwc", dir.path().display()),
        ..certfleet_shared::Config::default()
    };
    config.api.listen = "0.0.0.0:0".parse().unwrap();
    let err = certfleet_api::bind(&config).await.err().expect("refused").to_string();
    assert!(err.contains("api.listen") && err.contains("allow_plain_http"), "{err}");
    // A key file readable by others is refused too.
    let key = dir.path().join("token.key");
    std::fs::write(&key, [1u8; 40]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.api.token_signing_key_file = Some(key);
    let err = certfleet_api::bind(&config).await.err().expect("refused").to_string();
    assert!(err.contains("0600"), "{err}");
}

crate::both_backends!(certificate_hot_swap_under_a_client_loop);
