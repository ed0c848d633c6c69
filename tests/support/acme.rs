//! Helpers for tests against the stack's ACME CA (Pebble + BIND9): the issuer's config, the
//! root fetched from Pebble, and checks of an installed chain.

use crate::Stack;
use base64::Engine as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use x509_parser::prelude::*;

/// The `[issuers.pebble]` table for a stack: Pebble's directory, RFC 2136 to its BIND9, an
/// account key encryption key written (mode 0600) into `dir`.
pub fn issuer_toml(stack: &Stack, dir: &Path) -> String {
    let kek = dir.join("acme.kek");
    std::fs::write(&kek, base64::engine::general_purpose::STANDARD.encode(rand_key())).unwrap();
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    let named = format!("127.0.0.1:{}", stack.get("NAMED_PORT"));
    format!(
        "[issuers.pebble]\nkind = \"acme\"\ndirectory_url = \"{}\"\ncontact = \"pki@certfleet.test\"\n\
         ca_bundle = \"{}\"\naccount_dir = \"{}\"\naccount_key_encryption_key_file = \"{}\"\n\
         expected_issuer = \"Pebble\"\nresolver = \"{named}\"\n\
         [[issuers.pebble.dns]]\nprovider = \"rfc2136\"\nzone = \"{}\"\nserver = \"{named}\"\nkey_name = \"{}\"\n\
         algorithm = \"hmac-sha256\"\nsecret = \"{}\"\n",
        stack.get("PEBBLE_DIRECTORY_URL"),
        stack.get("PEBBLE_CA_BUNDLE"),
        dir.join("acme-account").display(),
        kek.display(),
        stack.get("ZONE"),
        stack.get("TSIG_KEY_NAME"),
        stack.get("TSIG_SECRET"),
    )
}

fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, b) in uuid::Uuid::new_v4().as_bytes().iter().chain(uuid::Uuid::new_v4().as_bytes()).enumerate() {
        key[i] = *b;
    }
    key
}

/// Pebble's issuing root (DER), from its management port; it changes at every start.
pub fn pebble_root(stack: &Stack) -> Vec<u8> {
    let url = format!("{}/roots/0", stack.get("PEBBLE_MGMT_URL"));
    let out = std::process::Command::new("curl")
        .args(["-sSf", "--max-time", "5", "--cacert", stack.get("PEBBLE_CA_BUNDLE"), &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {url}");
    x509_parser::pem::parse_x509_pem(&out.stdout).unwrap().1.contents
}

/// Checks one installed chain up to `root_der` and against its key; returns (fingerprint, notAfter).
pub fn check_acme_install(
    cert: &Path,
    key: &Path,
    root_der: &[u8],
    names: &[String],
) -> (String, chrono::DateTime<chrono::Utc>) {
    use rcgen::PublicKeyData as _;
    use sha2::Digest as _;
    let pem = std::fs::read_to_string(cert).unwrap();
    let ders: Vec<Vec<u8>> =
        x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()).map(|p| p.unwrap().contents).collect();
    assert!(ders.len() >= 2, "{}: leaf and intermediate", cert.display());
    let certs: Vec<X509Certificate<'_>> = ders.iter().map(|d| X509Certificate::from_der(d).unwrap().1).collect();
    let (_, root) = X509Certificate::from_der(root_der).unwrap();
    for pair in certs.windows(2) {
        pair[0].verify_signature(Some(pair[1].public_key())).expect("each certificate is signed by the next");
    }
    certs.last().unwrap().verify_signature(Some(root.public_key())).expect("the chain ends under Pebble's root");
    let leaf = &certs[0];
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect();
    for name in names {
        assert!(sans.contains(name), "{name} missing from {sans:?}");
    }
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    assert_eq!(key.der_bytes(), leaf.public_key().subject_public_key.data.as_ref(), "key matches certificate");
    let not_after = chrono::DateTime::from_timestamp(leaf.validity().not_after.timestamp(), 0).unwrap();
    (hex::encode(sha2::Sha256::digest(&ders[0])), not_after)
}
