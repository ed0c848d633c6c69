//! Notification peers for the tests: an HTTPS receiver (Slack, PagerDuty and webhook
//! fixtures: Slack and PagerDuty cannot be reached from the test machines, so the
//! receiver checks their documented payload shapes instead) that verifies webhook
//! signatures, refuses stale timestamps and answers 429/500 on demand; and a real SMTP
//! server, aiosmtpd from PyPI, with STARTTLS.
// The receiver's state is locked briefly and never across an await.
#![allow(clippy::disallowed_types)]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A private CA and a server certificate for 127.0.0.1.
pub struct TestPki {
    /// The CA certificate (PEM), written to `ca_file`.
    pub ca_file: PathBuf,
    /// Server certificate (PEM), written to `cert_file`.
    pub cert_file: PathBuf,
    /// Server key (PEM), written to `key_file`.
    pub key_file: PathBuf,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestPki {
    /// Generates the CA and server pair into `dir`.
    pub fn new(dir: &Path) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "notify fixture CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let (ca_file, cert_file, key_file) =
            (dir.join("notify-ca.pem"), dir.join("notify-server.pem"), dir.join("notify-server.key"));
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Self { ca_file, cert_file, key_file, cert_der: cert.der().clone(), key_der: key.serialize_der() }
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request path.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// Body.
    pub body: Vec<u8>,
    /// The status answered.
    pub status: u16,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How old a webhook signature may be before the receiver refuses it as a replay.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

/// Checks `X-Certfleet-Signature` the way a receiver should (docs/notifications.md):
/// `t` within the tolerance of `now`, `v1` the HMAC-SHA256 of `"<t>.<body>"`.
pub fn verify_signature(secret: &[u8], header: &str, body: &[u8], now: i64) -> Result<(), String> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return Err("malformed signature header".into()) };
    if (now - t).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(format!("stale timestamp {t} (now {now})"));
    }
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(body);
    aws_lc_rs::hmac::verify(&key, &msg, &v1).map_err(|_| "signature mismatch".to_owned())
}

/// What the receiver checks besides answering.
#[derive(Debug, Clone)]
pub enum Check {
    /// Nothing.
    None,
    /// A certfleet webhook signed with this secret.
    Webhook(Vec<u8>),
    /// Slack's incoming-webhook payload: `text` plus Block Kit `blocks`.
    Slack,
    /// PagerDuty Events API v2.
    PagerDuty,
}

#[derive(Default)]
struct State {
    script: VecDeque<(u16, Vec<(String, String)>)>,
    otherwise: Option<u16>,
    seen: Vec<Received>,
}

/// An HTTPS receiver on 127.0.0.1 (a task of the test's runtime; stopped on drop).
pub struct Receiver {
    /// Its base URL, `https://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn slack_problem(v: &serde_json::Value) -> Option<String> {
    // https://api.slack.com/reference/block-kit/blocks: text fallback, at most 50 blocks,
    // header plain_text <= 150, section fields <= 10 with text <= 2000, buttons with a url.
    if !v["text"].is_string() {
        return Some("no text fallback".into());
    }
    let Some(blocks) = v["blocks"].as_array() else { return Some("no blocks".into()) };
    if blocks.is_empty() || blocks.len() > 50 {
        return Some("bad number of blocks".into());
    }
    for b in blocks {
        match b["type"].as_str() {
            Some("header")
                if b["text"]["type"] == "plain_text"
                    && b["text"]["text"].as_str().is_some_and(|t| t.chars().count() <= 150) => {}
            Some("section") => {
                if let Some(fields) = b["fields"].as_array() {
                    if fields.len() > 10
                        || fields
                            .iter()
                            .any(|f| f["type"] != "mrkdwn" || f["text"].as_str().is_none_or(|t| t.len() > 2000))
                    {
                        return Some("bad section fields".into());
                    }
                } else if b["text"]["type"] != "mrkdwn" {
                    return Some("section without text or fields".into());
                }
            }
            Some("actions")
                if b["elements"]
                    .as_array()
                    .is_some_and(|e| e.iter().all(|x| x["type"] == "button" && x["url"].is_string())) => {}
            Some("context") if b["elements"].is_array() => {}
            other => return Some(format!("unexpected block {other:?}")),
        }
    }
    None
}

fn pagerduty_problem(v: &serde_json::Value) -> Option<String> {
    // https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
    if v["routing_key"].as_str().is_none_or(|k| k.is_empty()) {
        return Some("no routing_key".into());
    }
    if !v["dedup_key"].is_string() {
        return Some("no dedup_key".into());
    }
    match v["event_action"].as_str() {
        Some("resolve") => None,
        Some("trigger") => {
            let p = &v["payload"];
            let ok = p["summary"].as_str().is_some_and(|s| !s.is_empty() && s.len() <= 1024)
                && p["source"].is_string()
                && matches!(p["severity"].as_str(), Some("critical" | "error" | "warning" | "info"));
            (!ok).then(|| "trigger payload lacks summary/source/severity".into())
        }
        other => Some(format!("bad event_action {other:?}")),
    }
}

impl Receiver {
    /// Starts a receiver with `pki`'s server certificate, checking requests with `check`.
    pub async fn start(pki: &TestPki, check: Check) -> Self {
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![pki.cert_der.clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(pki.key_der.clone().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, st, check) = (acceptor.clone(), st.clone(), check.clone());
                tokio::spawn(async move {
                    let Ok(mut conn) = acceptor.accept(tcp).await else { return };
                    let Some((path, headers, body)) = read_request(&mut conn).await else { return };
                    let problem = match &check {
                        Check::None => None,
                        Check::Webhook(secret) => {
                            let sig = headers.get("x-certfleet-signature").cloned().unwrap_or_default();
                            verify_signature(secret, &sig, &body, chrono::Utc::now().timestamp()).err()
                        }
                        Check::Slack => {
                            slack_problem(&serde_json::from_slice(&body).unwrap_or_default()).or_else(|| {
                                serde_json::from_slice::<serde_json::Value>(&body).is_err().then(|| "not JSON".into())
                            })
                        }
                        Check::PagerDuty => pagerduty_problem(&serde_json::from_slice(&body).unwrap_or_default()),
                    };
                    let (status, extra) = {
                        let mut s = st.lock().unwrap();
                        let (status, extra) = match &problem {
                            Some(_) => (400, Vec::new()),
                            None => s.script.pop_front().unwrap_or((s.otherwise.unwrap_or(200), Vec::new())),
                        };
                        s.seen.push(Received { path, headers, body, status });
                        (status, extra)
                    };
                    let reply = problem.unwrap_or_else(|| "ok".into());
                    let mut head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n",
                        reply.len()
                    );
                    for (k, v) in extra {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    head.push_str(&reply);
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { url, state, task }
    }

    /// The next answers, in order (then 200, or what [`Receiver::answer_always`] set).
    pub fn script(&self, answers: &[(u16, &[(&str, &str)])]) {
        let mut s = self.state.lock().unwrap();
        for (status, headers) in answers {
            s.script.push_back((*status, headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()));
        }
    }

    /// Answer `status` once the script is used up (`None`: 200).
    pub fn answer_always(&self, status: Option<u16>) {
        self.state.lock().unwrap().otherwise = status;
    }

    /// Requests so far.
    pub fn seen(&self) -> Vec<Received> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests answered with a 2xx so far.
    pub fn accepted(&self) -> Vec<Received> {
        self.seen().into_iter().filter(|r| (200..300).contains(&r.status)).collect()
    }
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    conn: &mut S,
) -> Option<(String, HashMap<String, String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some((path, headers, body))
}

/// One message the SMTP server accepted.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Mail {
    /// Envelope sender.
    pub mail_from: String,
    /// Envelope recipients.
    pub rcpt_tos: Vec<String>,
    /// The To header.
    pub to: String,
    /// The decoded Subject.
    pub subject: String,
    /// The decoded text/plain part.
    pub text: String,
    /// The decoded text/html part.
    pub html: String,
    /// Whether the session was upgraded with STARTTLS before the message.
    pub tls: bool,
}

const SMTP_SERVER: &str = r#"
import email, email.policy, json, signal, ssl, sys
from aiosmtpd.controller import Controller
port, out, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Keep:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        body = lambda kind: (msg.get_body(preferencelist=(kind,)) or msg).get_content() if msg.is_multipart() else msg.get_content()
        rec = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "to": str(msg["To"]),
               "subject": str(msg["Subject"]), "text": body("plain"), "html": body("html"),
               "tls": session.ssl is not None}
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        return "250 OK"
kw = {}
if cert != "-":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    kw = dict(tls_context=ctx, require_starttls=True)
c = Controller(Keep(), hostname="127.0.0.1", port=port, **kw)
c.start()
open(out + ".ready", "w").close()
signal.sigwait([signal.SIGTERM, signal.SIGINT])
c.stop()
"#;

/// A real SMTP server (aiosmtpd) on 127.0.0.1; killed on drop.
pub struct Smtp {
    /// Its port.
    pub port: u16,
    out: PathBuf,
    child: Child,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venv holding aiosmtpd (scripts/stack/install.sh makes it).
pub fn venv_python() -> PathBuf {
    let venv = std::env::var("CERTFLEET_VENV").unwrap_or_else(|_| "/var/tmp/certfleet-venv".into());
    let py = Path::new(&venv).join("bin/python");
    if !Command::new(&py).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success()) {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack/install.sh");
        assert!(Command::new(scripts).status().unwrap().success(), "scripts/stack/install.sh failed");
    }
    py
}

impl Smtp {
    /// Starts aiosmtpd in `dir`; with `pki`, it requires STARTTLS with that certificate.
    pub fn start(dir: &Path, pki: Option<&TestPki>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, SMTP_SERVER).unwrap();
        let out = dir.join(format!("smtp-{port}.jsonl"));
        let (cert, key) = match pki {
            Some(p) => (p.cert_file.display().to_string(), p.key_file.display().to_string()),
            None => ("-".into(), "-".into()),
        };
        let log = std::fs::File::create(dir.join(format!("smtp-{port}.log"))).unwrap();
        let child = Command::new(venv_python())
            .arg(&script)
            .args([port.to_string(), out.display().to_string(), cert, key])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let ready = PathBuf::from(format!("{}.ready", out.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start; see {}", dir.display());
            std::thread::sleep(Duration::from_millis(50)); // test code, outside any runtime
        }
        Self { port, out, child }
    }

    /// Messages accepted so far.
    pub fn messages(&self) -> Vec<Mail> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Writes `secret` to `path` with `mode`.
pub fn secret_file(path: &Path, secret: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, secret).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
