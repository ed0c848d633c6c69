//! The `acme` issuer against a real Pebble (ACME test CA) and a real BIND9 (`named`).
//!
//! The tests start the shared test stack with `scripts/stack/up.sh <tempdir>` (installing it
//! first with `scripts/stack/install.sh` when `pebble` is missing): `named` authoritative for
//! `certfleet.test` and `acme-delegate.test` (RFC 2136 with TSIG), Pebble resolving through
//! that `named`, and a second Pebble that requires External Account Binding. One stack is
//! shared by the tests that overlap in time and is stopped with `scripts/stack/down.sh` when
//! the last guard drops. Every certificate is a real order validated by Pebble over DNS-01,
//! every record check a real DNS query to `named`, and every chain is verified with
//! `openssl verify` up to the root fetched from Pebble's management port. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

mod common;

use common::stack::Stack;

use base64::Engine as _;
use certfleet_proto::{KeyAlgorithm, RotationJob};
use certfleet_shared::config::AcmeIssuerConfig;
use certfleet_worker::issuer::acme::AcmeIssuer;
use certfleet_worker::issuer::{Issued, Issuer, IssuerError};
use certfleet_worker::outcome::{JobError, Outcome};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

impl Stack {
    /// A fresh name in the test zone.
    fn name(&self, label: &str) -> String {
        format!("{label}-{:08x}.{}", rand::random::<u32>(), self.get("ZONE"))
    }

    /// One RFC 2136 zone entry of the issuer config.
    fn zone(&self, zone: &str) -> serde_json::Value {
        serde_json::json!({"provider": "rfc2136", "zone": zone, "server": self.named().to_string(),
            "key_name": self.get("TSIG_KEY_NAME"), "algorithm": "hmac-sha256", "secret": self.get("TSIG_SECRET")})
    }

    /// Adds `_acme-challenge.<name>` CNAME `<name>.<delegate zone>` with a signed update (nsupdate).
    fn add_delegation(&self, name: &str) -> String {
        let target = format!("{name}.{}", self.get("DELEGATE_ZONE"));
        let script = format!(
            "server 127.0.0.1 {}\nzone {}\nupdate add _acme-challenge.{name}. 60 CNAME {target}.\nsend\n",
            self.get("NAMED_PORT"),
            self.get("ZONE")
        );
        let key = format!("hmac-sha256:{}:{}", self.get("TSIG_KEY_NAME"), self.get("TSIG_SECRET"));
        let mut child =
            Command::new("nsupdate").args(["-y", &key]).stdin(std::process::Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "nsupdate failed");
        target
    }

    /// The TXT values `named` serves at `fqdn` (a real query with dig).
    fn txt(&self, fqdn: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args(["+short", "+time=2", "+tries=1", "@127.0.0.1", "-p", self.get("NAMED_PORT"), "TXT", fqdn])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with('"')).map(str::to_owned).collect()
    }

    /// `named`'s log lines about updates of `fqdn` (proof that a record was written/removed).
    fn update_log(&self, fqdn: &str) -> (usize, usize) {
        let log = std::fs::read_to_string(self.dir().join("named/named.log")).unwrap();
        // named quotes the name when adding and not when deleting.
        let count = |needle: String| log.lines().filter(|l| l.contains(&needle)).count();
        (count(format!("adding an RR at '{fqdn}' TXT")), count(format!("deleting an RR at {fqdn} TXT")))
    }

    /// Pebble's issuing root, fetched from its management port.
    fn root_pem(&self, mgmt: &str) -> String {
        let url = format!("{}/roots/0", self.get(mgmt));
        let out = Command::new("curl")
            .args(["-sSf", "--max-time", "5", "--cacert", self.get("PEBBLE_CA_BUNDLE"), &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "GET {url}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Writes `text` to `path` with `mode`.
fn secret_file(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A fresh issuer directory with its account encryption key.
fn issuer_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key: [u8; 32] = rand::random();
    secret_file(&dir.path().join("kek"), &base64::engine::general_purpose::STANDARD.encode(key), 0o600);
    dir
}

fn config(stack: &Stack, dir: &Path, delegate: bool) -> AcmeIssuerConfig {
    let mut c = serde_json::json!({
        "directory_url": stack.get("PEBBLE_DIRECTORY_URL"),
        "contact": "pki@certfleet.test",
        "ca_bundle": stack.get("PEBBLE_CA_BUNDLE"),
        "account_dir": dir.join("account"),
        "account_key_encryption_key_file": dir.join("kek"),
        "expected_issuer": "Pebble",
        "dns": [stack.zone(stack.get("ZONE")), stack.zone(stack.get("DELEGATE_ZONE"))],
        "resolver": stack.named().to_string(),
        "propagation_timeout": "10s",
    });
    if delegate {
        c["delegate_zone"] = stack.get("DELEGATE_ZONE").into();
    }
    serde_json::from_value(c).unwrap()
}

fn job(cn: &str, sans: &[String]) -> RotationJob {
    serde_json::from_value(serde_json::json!({
        "job_id": uuid::Uuid::new_v4(), "attempt": 1, "asset_id": 1, "system_name": cn, "driver": "local",
        "issuer": "acme", "common_name": cn, "subject_alternative_names": sans, "ip_address": null, "port": null,
        "key_algorithm": "ecdsa-p256", "certificate_validation": false, "settings": {}, "not_before": null,
        "published_at": chrono::Utc::now(),
    }))
    .unwrap()
}

/// Has a fresh key + CSR made (as a device would) and signs it; returns the key's public bits.
async fn sign(issuer: &AcmeIssuer, cn: &str, sans: &[String]) -> (Result<Issued, IssuerError>, Vec<u8>) {
    use rcgen::PublicKeyData as _;
    let (c, s) = (cn.to_owned(), sans.to_vec());
    let made = tokio::task::spawn_blocking(move || certfleet_worker::keygen::generate(KeyAlgorithm::EcdsaP256, &c, &s))
        .await
        .unwrap()
        .unwrap();
    (issuer.sign(&made.csr_der, &job(cn, sans)).await, made.key.der_bytes().to_vec())
}

/// Checks an issued chain: leaf first, the CSR's key, every name, and `openssl verify` up to
/// Pebble's root.
fn check_chain(stack: &Stack, mgmt: &str, issued: &Issued, key_bits: &[u8], names: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let ders = certfleet_worker::certinfo::pem_chain_to_der(&issued.chain_pem).unwrap();
    assert!(ders.len() >= 2, "leaf plus intermediate expected");
    assert_eq!(ders[0], issued.leaf_der, "leaf first");
    assert_eq!(certfleet_worker::certinfo::public_key_bits(&issued.leaf_der).unwrap(), key_bits);
    let (leaf, chain, root) = (dir.path().join("leaf.pem"), dir.path().join("chain.pem"), dir.path().join("root.pem"));
    std::fs::write(&leaf, certfleet_worker::certinfo::der_to_pem(&issued.leaf_der)).unwrap();
    std::fs::write(&chain, &issued.chain_pem).unwrap();
    std::fs::write(&root, stack.root_pem(mgmt)).unwrap();
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&root)
        .arg("-untrusted")
        .arg(&chain)
        .arg(&leaf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text =
        Command::new("openssl").args(["x509", "-noout", "-ext", "subjectAltName", "-in"]).arg(&leaf).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for name in names {
        assert!(text.contains(&format!("DNS:{name}")), "{name} missing from {text}");
    }
    assert!(issued.info.issuer.contains("Pebble"), "{}", issued.info.issuer);
    assert!(issued.info.not_after > chrono::Utc::now());
}

/// The record was written (named logged the add) and is gone again (log + live query).
fn assert_cleaned(stack: &Stack, fqdn: &str) {
    let (added, deleted) = stack.update_log(fqdn);
    assert!(added >= 1, "no TXT was ever written at {fqdn}");
    assert_eq!(added, deleted, "every value written at {fqdn} is removed");
    assert_eq!(stack.txt(fqdn), Vec::<String>::new(), "TXT left at {fqdn}");
}

#[tokio::test]
async fn plain_name() {
    let stack = Stack::shared();
    let dir = issuer_dir();
    let issuer = AcmeIssuer::new(&config(&stack, dir.path(), false)).await.unwrap();
    let name = stack.name("plain");
    let (issued, key) = sign(&issuer, &name, &[]).await;
    check_chain(&stack, "PEBBLE_MGMT_URL", &issued.unwrap(), &key, &[&name]);
    assert_cleaned(&stack, &format!("_acme-challenge.{name}"));
}

/// A renewal names the certificate it replaces (RFC 9773). Pebble 2.4 offers no ARI, so the
/// order goes out without `replaces` and still succeeds; the issued leaf carries its own
/// ARI id for the next renewal, and no renewal window (the lifetime fraction decides).
#[tokio::test]
async fn renewal_with_replaces_on_a_ca_without_ari() {
    use rcgen::PublicKeyData as _;
    let stack = Stack::shared();
    let dir = issuer_dir();
    let issuer = AcmeIssuer::new(&config(&stack, dir.path(), false)).await.unwrap();
    let name = stack.name("renewal");
    let (first, _) = sign(&issuer, &name, &[]).await;
    let first = first.unwrap();
    let previous = first.info.ari_cert_id.clone().expect("an ACME leaf has an ARI id (it carries an AKI)");
    assert_eq!(previous, certfleet_worker::issuer::ari::cert_id(&first.leaf_der).unwrap());
    assert!(first.info.renewal_window.is_none(), "Pebble 2.4 has no renewalInfo");

    let made = certfleet_worker::keygen::generate(KeyAlgorithm::EcdsaP256, &name, &[]).unwrap();
    let mut renewal = job(&name, &[]);
    renewal.replaces = Some(previous.clone());
    let second = issuer.sign(&made.csr_der, &renewal).await.unwrap();
    check_chain(&stack, "PEBBLE_MGMT_URL", &second, made.key.der_bytes(), &[&name]);
    assert_ne!(second.info.ari_cert_id.as_deref(), Some(previous.as_str()), "a new certificate");
    assert_cleaned(&stack, &format!("_acme-challenge.{name}"));
}

#[tokio::test]
async fn multi_san_and_wildcard() {
    let stack = Stack::shared();
    let dir = issuer_dir();
    let issuer = AcmeIssuer::new(&config(&stack, dir.path(), false)).await.unwrap();
    let (base, other) = (stack.name("multi"), stack.name("other"));
    let wildcard = format!("*.{base}");
    let sans = vec![base.clone(), wildcard.clone(), other.clone()];
    let (issued, key) = sign(&issuer, &base, &sans).await;
    check_chain(&stack, "PEBBLE_MGMT_URL", &issued.unwrap(), &key, &[&base, &wildcard, &other]);
    // `x` and `*.x` put two values on one TXT name; both were written and both removed.
    let (added, _) = stack.update_log(&format!("_acme-challenge.{base}"));
    assert_eq!(added, 2, "one value per authorization");
    assert_cleaned(&stack, &format!("_acme-challenge.{base}"));
    assert_cleaned(&stack, &format!("_acme-challenge.{other}"));
}

#[tokio::test]
async fn delegated_by_cname() {
    let stack = Stack::shared();
    let dir = issuer_dir();
    let issuer = AcmeIssuer::new(&config(&stack, dir.path(), true)).await.unwrap();
    let delegated = stack.get("DELEGATED_NAME").to_owned();
    let extra = stack.name("deleg");
    let extra_target = stack.add_delegation(&extra);
    let (issued, key) = sign(&issuer, &delegated, std::slice::from_ref(&extra)).await;
    check_chain(&stack, "PEBBLE_MGMT_URL", &issued.unwrap(), &key, &[&delegated, &extra]);
    // The values went to the CNAME targets in the delegate zone, never to the names.
    assert_cleaned(&stack, stack.get("DELEGATED_CHALLENGE_TARGET"));
    assert_cleaned(&stack, &extra_target);
    assert_eq!(stack.update_log(&format!("_acme-challenge.{extra}")).0, 0);
}

#[tokio::test]
async fn missing_cname_is_permanent_and_names_the_name() {
    let stack = Stack::shared();
    let dir = issuer_dir();
    let issuer = AcmeIssuer::new(&config(&stack, dir.path(), true)).await.unwrap();
    let missing = stack.name("nocname");
    let (result, _) = sign(&issuer, "delegated2.certfleet.test", std::slice::from_ref(&missing)).await;
    let err = result.unwrap_err();
    assert!(matches!(&err, IssuerError::Preflight(m) if m.contains(&missing)), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("pre-flight check failed, the CA was not asked: ") && !text.contains("CA rejected"),
        "{text}"
    );
    assert!(matches!(JobError::Issuer(err).classify(), Outcome::Dead { .. }));
    assert_eq!(stack.update_log("delegated2.certfleet.test.acme-delegate.test").0, 0, "nothing written");
}

#[tokio::test]
async fn txt_removed_after_a_failed_order() {
    let stack = Stack::shared();
    let dir = issuer_dir();
    let mut c = config(&stack, dir.path(), false);
    // The propagation checks ask a server that never answers: the order fails after the
    // values were written (a real update to named), and they must still be removed.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.resolver = Some(silent.local_addr().unwrap());
    c.propagation_timeout = Duration::from_secs(1);
    let issuer = AcmeIssuer::new(&c).await.unwrap();
    let name = stack.name("fail");
    let (result, _) = sign(&issuer, &name, &[format!("*.{name}")]).await;
    let err = result.unwrap_err();
    assert!(matches!(&err, IssuerError::Unavailable(m) if m.contains("propagation")), "{err}");
    assert!(matches!(JobError::Issuer(err).classify(), Outcome::Retry { .. }));
    let fqdn = format!("_acme-challenge.{name}");
    assert_eq!(stack.update_log(&fqdn).0, 2);
    assert_cleaned(&stack, &fqdn);
}

#[tokio::test]
async fn external_account_binding() {
    let stack = Stack::shared();
    let dir = issuer_dir();
    let mut c = config(&stack, dir.path(), false);
    c.directory_url = stack.get("PEBBLE_EAB_DIRECTORY_URL").to_owned();
    // Without EAB the EAB-only CA refuses the account, permanently and clearly.
    let err = AcmeIssuer::new(&c).await.unwrap().account().await.err().unwrap();
    assert!(matches!(&err, IssuerError::Rejected(m) if m.contains("externalAccountRequired")), "{err}");
    // An HMAC key file others can read is refused before any request.
    let hmac = dir.path().join("eab-hmac");
    secret_file(&hmac, stack.get("PEBBLE_EAB_HMAC"), 0o644);
    c.eab_kid = Some(stack.get("PEBBLE_EAB_KID").to_owned());
    c.eab_hmac_key_file = Some(hmac.clone());
    let err = AcmeIssuer::new(&c).await.err().unwrap().to_string();
    assert!(err.contains("0600") && !err.contains(stack.get("PEBBLE_EAB_HMAC")), "{err}");
    std::fs::set_permissions(&hmac, std::fs::Permissions::from_mode(0o600)).unwrap();
    let issuer = AcmeIssuer::new(&c).await.unwrap();
    let name = stack.name("eab");
    let (issued, key) = sign(&issuer, &name, &[]).await;
    check_chain(&stack, "PEBBLE_EAB_MGMT_URL", &issued.unwrap(), &key, &[&name]);
}

#[tokio::test]
async fn account_is_reused_and_stored_encrypted() {
    let stack = Stack::shared();
    let dir = issuer_dir();
    let c = config(&stack, dir.path(), false);
    // Two workers starting at once: one registers, the other ends up on the same account.
    let (a, b) = (AcmeIssuer::new(&c).await.unwrap(), AcmeIssuer::new(&c).await.unwrap());
    let (ida, idb) = tokio::join!(a.account(), b.account());
    let id = ida.unwrap().id().to_owned();
    assert_eq!(idb.unwrap().id(), id);
    // A restart (a new issuer on the same directory) loads it and can order with it.
    let restarted = AcmeIssuer::new(&c).await.unwrap();
    assert_eq!(restarted.account().await.unwrap().id(), id);
    let name = stack.name("reuse");
    let (issued, key) = sign(&restarted, &name, &[]).await;
    check_chain(&stack, "PEBBLE_MGMT_URL", &issued.unwrap(), &key, &[&name]);

    let files: Vec<_> = std::fs::read_dir(dir.path().join("account")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().ends_with(".json.enc"));
    assert_eq!(std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
    let stored = std::fs::read(&files[0]).unwrap();
    let text = String::from_utf8_lossy(&stored);
    for plain in ["PRIVATE KEY", "key_pkcs8", "\"id\"", id.as_str(), "MIG"] {
        assert!(!text.contains(plain), "account file holds {plain:?} in clear");
    }

    // Another key cannot open it, and the error says so without printing either key.
    let other_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    secret_file(&dir.path().join("kek"), &other_key, 0o600);
    let err = AcmeIssuer::new(&c).await.unwrap().account().await.err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, IssuerError::Internal(_)) && text.contains("account_key_encryption_key_file"), "{text}");
    assert!(!text.contains(&other_key));
}

#[tokio::test]
async fn unreachable_ca_is_retried() {
    let stack = Stack::shared();
    let dir = issuer_dir();
    let mut c = config(&stack, dir.path(), false);
    // A port nothing listens on: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    c.directory_url = format!("https://127.0.0.1:{port}/dir");
    let issuer = AcmeIssuer::new(&c).await.unwrap();
    let (result, _) = sign(&issuer, &stack.name("down"), &[]).await;
    let err = result.unwrap_err();
    assert!(matches!(err, IssuerError::Unavailable(_)), "{err}");
    assert!(matches!(JobError::Issuer(err).classify(), Outcome::Retry { after: None, .. }));
}
