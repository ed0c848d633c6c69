//! Helpers for the SSH device tests (`linux-ssh`, `haproxy`): the worker's SSH config for a
//! stack, routes, the test's own TLS handshakes, an AMQP tap (RabbitMQ's firehose) and a
//! search for private-key bytes in everything the fleet wrote.

use crate::{Stack, TestEnv};
use futures_util::StreamExt as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Routes for the SSH drivers (plus `local`).
pub const SSH_ROUTES: &str = "[[route]]\nhost_platform = \"linux\"\ndriver = \"linux-ssh\"\n\n\
    [[route]]\nhost_platform = \"haproxy\"\ndriver = \"haproxy\"\n\n\
    [[route]]\nhost_platform = \"local\"\ndriver = \"local\"\n";

/// A test env whose workers log in to the stack's sshd with its client key.
pub fn ssh_env(stack: &Stack, extra: &str) -> TestEnv {
    let env = TestEnv::new(&format!(
        "{extra}\n[drivers.ssh]\nprivate_key_file = \"{}\"\nuser = \"{}\"\nconnect_timeout = \"5s\"\ncommand_timeout = \"30s\"\n",
        stack.get("SSH_KEY"),
        stack.get("SSH_USER"),
    ));
    std::fs::write(env.path("routes.toml"), SSH_ROUTES).unwrap();
    env
}

/// Accepts any certificate (the test compares it afterwards) but checks the signatures.
#[derive(Debug)]
struct AnyCert(rustls::crypto::WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The test's own TLS client.
pub fn tls_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(AnyCert(provider.signature_verification_algorithms));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One handshake with `127.0.0.1:port` (SNI `sni`); the served leaf, DER.
pub async fn served_leaf(connector: &tokio_rustls::TlsConnector, port: u16, sni: &str) -> Result<Vec<u8>, String> {
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let run = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        let tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
        let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec());
        leaf.ok_or_else(|| "no certificate served".to_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), run).await.map_err(|_| "handshake timed out".to_owned())?
}

/// The first certificate of a PEM file, DER.
pub fn first_cert_der(path: &str) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    pem_blocks(&text).into_iter().find(|(tag, _)| tag == "CERTIFICATE").map(|(_, der)| der).expect("a certificate")
}

/// `(tag, DER)` of every PEM block in `text`.
pub fn pem_blocks(text: &[u8]) -> Vec<(String, Vec<u8>)> {
    x509_parser::pem::Pem::iter_from_buffer(text).map(|p| p.unwrap()).map(|p| (p.label, p.contents)).collect()
}

/// Every message published or delivered in the vhost, through RabbitMQ's firehose
/// (`rabbitmqctl trace_on`), collected until the returned task is aborted.
pub async fn tap(env: &TestEnv) -> (Arc<tokio::sync::Mutex<Vec<Vec<u8>>>>, tokio::task::JoinHandle<()>) {
    let out = std::process::Command::new("rabbitmqctl").args(["trace_on", "-p", &env.vhost.name]).output().unwrap();
    assert!(out.status.success(), "trace_on: {}", String::from_utf8_lossy(&out.stderr));
    let conn = lapin::Connection::connect(&env.vhost.url, lapin::ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions { exclusive: true, ..Default::default() },
            Default::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(q.name().clone(), "amq.rabbitmq.trace".into(), "#".into(), Default::default(), Default::default())
        .await
        .unwrap();
    let mut consumer = ch
        .basic_consume(
            q.name().clone(),
            "tap".into(),
            lapin::options::BasicConsumeOptions { no_ack: true, ..Default::default() },
            Default::default(),
        )
        .await
        .unwrap();
    let seen = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let task = tokio::spawn(async move {
        let (_conn, _ch) = (conn, ch);
        while let Some(Ok(d)) = consumer.next().await {
            sink.lock().await.push(d.data);
        }
    });
    (seen, task)
}

/// The forms a leaked private key could take: the PEM body lines, the base64 of its DER
/// in one piece, the DER itself and its hex.
pub fn key_fingerprints(key_pem: &[u8]) -> Vec<(String, Vec<u8>)> {
    let (_, der) = pem_blocks(key_pem).into_iter().find(|(t, _)| t.contains("PRIVATE KEY")).expect("a private key");
    let text = String::from_utf8_lossy(key_pem);
    let body: Vec<&str> = text.lines().filter(|l| !l.starts_with("-----") && l.len() > 20).collect();
    let mut forms = vec![("DER".to_owned(), der.clone()), ("hex".to_owned(), hex::encode(&der).into_bytes())];
    forms.push(("base64".to_owned(), body.concat().into_bytes()));
    for (i, line) in body.iter().enumerate() {
        forms.push((format!("PEM line {i}"), line.as_bytes().to_vec()));
    }
    forms
}

/// Fails if any of `forms` occurs in `haystack` (named `what`).
pub fn assert_absent(forms: &[(String, Vec<u8>)], haystack: &[u8], what: &str) {
    for (name, needle) in forms {
        assert!(
            !haystack.windows(needle.len()).any(|w| w == needle.as_slice()),
            "the device key ({name}) leaked into {what}"
        );
    }
}

/// Every file under `dir` (recursively) whose name ends with one of `suffixes`.
pub fn files_with(dir: &Path, suffixes: &[&str]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files_with(&p, suffixes));
        } else if suffixes.iter().any(|s| p.to_string_lossy().ends_with(s)) {
            out.push(p);
        }
    }
    out
}

/// A second sshd for one test, on the stack's host key and authorized keys, with its
/// config edited (for example `AllowTcpForwarding no`); killed when it drops.
pub struct ExtraSshd {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl ExtraSshd {
    /// Starts it with each `(from, to)` replacement applied to the stack's sshd_config.
    pub fn start(stack: &Stack, replacements: &[(&str, &str)]) -> Self {
        let state = stack.get("STATE_DIR");
        let base = std::fs::read_to_string(format!("{state}/ssh/sshd_config")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // A port the kernel picks from its ephemeral range (the stack uses 20000-31999).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config: String = base
            .lines()
            .map(|l| {
                if l.starts_with("Port ") {
                    format!("Port {port}")
                } else if l.starts_with("PidFile ") {
                    format!("PidFile {}", dir.path().join("sshd.pid").display())
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        for (from, to) in replacements {
            assert!(config.contains(from), "sshd_config has no {from:?}");
            config = config.replace(from, to);
        }
        let conf = dir.path().join("sshd_config");
        std::fs::write(&conf, config + "\n").unwrap();
        let log = dir.path().join("sshd.log");
        // -D: stay in the foreground, so this guard owns the process.
        let child = std::process::Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(&conf)
            .arg("-E")
            .arg(&log)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut me = Self { port, child, _dir: dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                matches!(me.child.try_wait(), Ok(None)),
                "sshd exited: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            assert!(std::time::Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50)); // test code, outside any runtime
        }
        me.port = port;
        me
    }
}

impl Drop for ExtraSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
