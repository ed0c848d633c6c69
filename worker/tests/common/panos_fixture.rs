//! A PAN-OS 9/10 XML API stand-in over HTTPS, answering as the PAN-OS XML API documentation
//! shows: `keygen`, `op` (`request certificate generate`, `show jobs`), `export` and
//! `import` of certificates, `config` get/show/set of an SSL/TLS service profile, and
//! `commit` with a job polled until FIN. It makes a real key and CSR with rcgen when asked
//! to generate, keeps the key to itself, and accepts an import only for a certificate
//! whose public key matches that key. PAN-OS itself cannot run here.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::{Request, read_request, write_response};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData as _};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Mutex;

pub const USER: &str = "api-admin";
pub const PASSWORD: &str = "fixture-password";
pub const API_KEY: &str = "LUFRPT1fixture-api-key==";
pub const PROFILE: &str = "portal-profile";
pub const OLD_CERT: &str = "portal-old";

/// One API call as the firewall saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// `keygen`, `generate <name>`, `export <name>`, `import <name>`, `get`, `show`,
    /// `set <certificate>`, `commit`, `job <id>`.
    pub what: String,
    /// The `X-PAN-KEY` header.
    pub key: Option<String>,
}

struct Entry {
    key: Option<KeyPair>,
    csr_pem: Option<String>,
    cert_pem: Option<String>,
}

struct Job {
    polls: u32,
    ok: bool,
    candidate: String,
}

#[derive(Default)]
pub struct State {
    pub calls: Vec<Call>,
    certs: BTreeMap<String, Entry>,
    pub candidate: String,
    pub running: String,
    dirty: bool,
    jobs: BTreeMap<u64, Job>,
    /// Commits of a candidate whose profile certificate starts with this fail.
    pub fail_commit_of: Option<String>,
}

pub struct Fixture {
    pub port: u16,
    /// The fixture's own HTTPS certificate (self-signed, for 127.0.0.1).
    pub tls_cert_pem: String,
    pub state: Arc<Mutex<State>>,
}

fn ok(inner: &str) -> (u16, String) {
    (200, format!("<response status=\"success\">{inner}</response>"))
}

fn error(http: u16, code: u32, msg: &str) -> (u16, String) {
    (http, format!("<response status = 'error' code = '{code}'><result><msg>{msg}</msg></result></response>"))
}

fn params(req: &Request) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some((_, q)) = req.target.split_once('?') {
        out.extend(url::form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    if req.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
        out.extend(url::form_urlencoded::parse(&req.body).into_owned());
    }
    out
}

/// The content of the multipart part named `file`.
fn multipart_file(req: &Request) -> Option<String> {
    let boundary = req.header("content-type")?.split("boundary=").nth(1)?.to_owned();
    let body = String::from_utf8(req.body.clone()).ok()?;
    body.split(&format!("--{boundary}")).find(|p| p.contains("name=\"file\"")).and_then(|part| {
        let (_, content) = part.split_once("\r\n\r\n")?;
        Some(content.strip_suffix("\r\n").unwrap_or(content).to_owned())
    })
}

fn profile_xpath() -> String {
    format!("/config/shared/ssl-tls-service-profile/entry[@name='{PROFILE}']")
}

fn generate(state: &mut State, cmd: &roxmltree::Document<'_>) -> (u16, String) {
    let text = |name: &str| cmd.descendants().find(|n| n.has_tag_name(name)).and_then(|n| n.text()).map(str::to_owned);
    let members = |name: &str| -> Vec<String> {
        cmd.descendants()
            .find(|n| n.has_tag_name(name))
            .map(|n| n.children().filter_map(|m| m.text().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let (Some(name), Some(cn)) = (text("certificate-name"), text("name")) else {
        return error(400, 18, "Malformed Command");
    };
    if text("signed-by").as_deref() != Some("external") {
        return error(400, 17, "only signed-by external is covered by this fixture");
    }
    let key = match (text("ecdsa-nbits").as_deref(), text("rsa-nbits").as_deref()) {
        (Some("256"), _) => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        (Some("384"), _) => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        (_, Some(_)) => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256),
        _ => return error(400, 18, "algorithm missing"),
    };
    let Ok(key) = key else { return error(500, 21, "key generation failed") };
    let mut sans = members("hostname");
    sans.extend(members("ip"));
    let mut params = CertificateParams::new(sans).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).unwrap();
    state.calls.last_mut().unwrap().what = format!("generate {name}");
    state.certs.insert(name, Entry { key: Some(key), csr_pem: Some(csr.pem().unwrap()), cert_pem: None });
    ok("<result>Successfully generated CSR</result>")
}

fn show_job(state: &mut State, id: u64) -> (u16, String) {
    state.calls.last_mut().unwrap().what = format!("job {id}");
    let Some(job) = state.jobs.get_mut(&id) else { return error(400, 7, "job not found") };
    job.polls += 1;
    if job.polls < 2 {
        return ok(&format!(
            "<result><job><id>{id}</id><type>Commit</type><status>ACT</status><result>PEND</result><progress>55</progress></job></result>"
        ));
    }
    let (result, details) = if job.ok {
        state.running = job.candidate.clone();
        state.dirty = false;
        ("OK", "<line>Configuration committed successfully</line>")
    } else {
        ("FAIL", "<line>Validation Error: ssl-tls-service-profile certificate is invalid</line>")
    };
    ok(&format!(
        "<result><job><id>{id}</id><type>Commit</type><status>FIN</status><result>{result}</result><progress>100</progress><details>{details}</details></job></result>"
    ))
}

fn handle(state: &mut State, req: &Request) -> (u16, String, &'static str) {
    let p = params(req);
    let kind = p.get("type").cloned().unwrap_or_default();
    state.calls.push(Call { what: kind.clone(), key: req.header("x-pan-key").map(str::to_owned) });
    if kind == "keygen" {
        let (s, b) = if p.get("user").map(String::as_str) == Some(USER)
            && p.get("password").map(String::as_str) == Some(PASSWORD)
        {
            ok(&format!("<result><key>{API_KEY}</key></result>"))
        } else {
            error(403, 403, "Invalid Credential")
        };
        return (s, b, "application/xml");
    }
    if req.header("x-pan-key") != Some(API_KEY) {
        let (s, b) = error(403, 403, "Invalid credentials.");
        return (s, b, "application/xml");
    }
    let name = p.get("certificate-name").cloned().unwrap_or_default();
    let (s, b) = match kind.as_str() {
        "op" => {
            let cmd = p.get("cmd").cloned().unwrap_or_default();
            let Ok(doc) = roxmltree::Document::parse(&cmd) else {
                return (400, error(400, 18, "Malformed Command").1, "application/xml");
            };
            match doc.root_element().tag_name().name() {
                "request" => generate(state, &doc),
                "show" => {
                    let id = doc
                        .descendants()
                        .find(|n| n.has_tag_name("id"))
                        .and_then(|n| n.text())
                        .and_then(|t| t.parse().ok());
                    show_job(state, id.unwrap_or(0))
                }
                _ => error(400, 17, "Invalid command"),
            }
        }
        "export" => {
            state.calls.last_mut().unwrap().what = format!("export {name}");
            match state.certs.get(&name) {
                Some(Entry { cert_pem: Some(pem), .. }) | Some(Entry { csr_pem: Some(pem), cert_pem: None, .. }) => {
                    return (200, pem.clone(), "text/plain");
                }
                _ => error(400, 7, &format!("certificate {name} not present")),
            }
        }
        "import" => {
            state.calls.last_mut().unwrap().what = format!("import {name}");
            let file = multipart_file(req).unwrap_or_default();
            let leaf = pem::parse_many(&file).ok().and_then(|b| b.into_iter().find(|b| b.tag() == "CERTIFICATE"));
            match (state.certs.get_mut(&name), leaf) {
                (Some(entry), Some(leaf)) => {
                    let (_, cert) = x509_parser::parse_x509_certificate(leaf.contents()).unwrap();
                    let matches = entry
                        .key
                        .as_ref()
                        .is_some_and(|k| k.der_bytes() == cert.public_key().subject_public_key.data.as_ref());
                    if matches {
                        entry.cert_pem = Some(file.clone());
                        state.dirty = true;
                        ok(&format!(
                            "<msg><line>Successfully imported {name} into candidate configuration</line></msg>"
                        ))
                    } else {
                        error(
                            400,
                            12,
                            &format!("Import of {name} failed. The certificate does not match the private key"),
                        )
                    }
                }
                _ => error(400, 12, "Import failed: no such CSR, or no certificate in the file"),
            }
        }
        "config" => {
            let action = p.get("action").cloned().unwrap_or_default();
            let on_profile = p.get("xpath") == Some(&profile_xpath());
            match action.as_str() {
                "get" | "show" => {
                    state.calls.last_mut().unwrap().what = action.clone();
                    let cert = if action == "get" { &state.candidate } else { &state.running };
                    if on_profile {
                        ok(&format!(
                            "<result total-count=\"1\" count=\"1\"><entry name=\"{PROFILE}\"><certificate>{cert}</certificate><protocol-settings><min-version>tls1-2</min-version></protocol-settings></entry></result>"
                        ))
                    } else {
                        ok("<result total-count=\"0\" count=\"0\"/>")
                    }
                }
                "set" => {
                    let element = p.get("element").cloned().unwrap_or_default();
                    let cert = roxmltree::Document::parse(&element)
                        .ok()
                        .and_then(|d| d.root_element().text().map(str::to_owned))
                        .unwrap_or_default();
                    state.calls.last_mut().unwrap().what = format!("set {cert}");
                    if !on_profile {
                        error(400, 6, "Bad Xpath")
                    } else if state.certs.get(&cert).is_none_or(|e| e.cert_pem.is_none()) {
                        error(400, 12, &format!("{cert} is not a valid reference"))
                    } else {
                        state.candidate = cert;
                        state.dirty = true;
                        ok("<msg>command succeeded</msg>")
                    }
                }
                _ => error(400, 17, "Invalid command"),
            }
        }
        "commit" => {
            if !state.dirty {
                (
                    200,
                    "<response status=\"success\" code=\"19\"><msg>There are no changes to commit.</msg></response>"
                        .to_owned(),
                )
            } else {
                let id = state.jobs.len() as u64 + 1;
                let fail = state.fail_commit_of.as_ref().is_some_and(|p| state.candidate.starts_with(p.as_str()));
                state.jobs.insert(id, Job { polls: 0, ok: !fail, candidate: state.candidate.clone() });
                (
                    200,
                    format!(
                        "<response status=\"success\" code=\"19\"><result><msg><line>Commit job enqueued with jobid {id}</line></msg><job>{id}</job></result></response>"
                    ),
                )
            }
        }
        _ => error(400, 400, "Bad request"),
    };
    (s, b, "application/xml")
}

impl Fixture {
    /// Starts the firewall on 127.0.0.1 with the profile bound to an existing certificate.
    pub async fn start() -> Self {
        let tls = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(tls.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![tls.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let old = rcgen::generate_simple_self_signed(vec!["old.example.test".into()]).unwrap();
        let mut state = State { candidate: OLD_CERT.into(), running: OLD_CERT.into(), ..State::default() };
        state.certs.insert(OLD_CERT.into(), Entry { key: None, csr_pem: None, cert_pem: Some(old.cert.pem()) });
        let state = Arc::new(Mutex::new(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(tcp).await else { return };
                    let Ok(req) = read_request(&mut stream).await else { return };
                    let (status, body, ctype) = handle(&mut *state.lock().await, &req);
                    let _ = write_response(&mut stream, status, &[("Content-Type", ctype)], body.as_bytes()).await;
                });
            }
        });
        Self { port, tls_cert_pem: tls.cert.pem(), state }
    }

    pub async fn calls(&self) -> Vec<Call> {
        self.state.lock().await.calls.clone()
    }
}
