//! End to end with a real ACME CA: the real `certfleet-scheduler` and one `certfleet-worker`
//! rotate 20 `local` assets through the `acme` issuer, against real RabbitMQ (a private
//! vhost), a SQLite inventory, Pebble and BIND9 (`scripts/stack/up.sh`, DNS-01 over RFC
//! 2136). Every certificate on disk must chain to the Pebble root fetched from Pebble's
//! management port, match the key beside it, and be the one the inventory records.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use base64::Engine as _;
use certfleet_shared::db::entity::asset::AssetState;
use certfleet_shared::db::{assets, dead_letters};
use certfleet_tests::*;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;
use x509_parser::prelude::*;

const ASSETS: usize = 20;

fn issuer_toml(stack: &Stack, dir: &Path) -> String {
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

fn pebble_root(stack: &Stack) -> Vec<u8> {
    let url = format!("{}/roots/0", stack.get("PEBBLE_MGMT_URL"));
    let out = std::process::Command::new("curl")
        .args(["-sSf", "--max-time", "5", "--cacert", stack.get("PEBBLE_CA_BUNDLE"), &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {url}");
    x509_parser::pem::parse_x509_pem(&out.stdout).unwrap().1.contents
}

/// Checks one installed chain up to `root_der` and against its key; returns (fingerprint, notAfter).
fn check_acme_install(
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

async fn count_rotated(env: &TestEnv) -> usize {
    let db = env.db().await;
    let n = assets::list(&db).await.map(|a| a.iter().filter(|a| a.state == AssetState::Ok).count()).unwrap_or(0);
    db.close().await.ok();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_assets_through_pebble() {
    let stack = Stack::start();
    let zone = stack.get("ZONE").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/inventory.db?mode=rwc", dir.path().display());
    let extra = issuer_toml(&stack, dir.path());
    let env = TestEnv::with_db(dir, db_url, &extra);
    let names = |i: usize| vec![format!("dev-{i:03}.{zone}"), format!("alt-{i:03}.{zone}")];
    let rows: Vec<serde_json::Value> = (0..ASSETS)
        .map(|i| {
            serde_json::json!({
                "system_name": format!("dev-{i:03}"),
                "common_name": names(i)[0],
                "subject_alternative_name": names(i),
                "certificate_authority": "pebble",
                "host_platform": "local",
                "settings": env.local_settings(&format!("dev-{i:03}")),
            })
        })
        .collect();
    env.import(&serde_json::Value::Array(rows));
    let _worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local", "--concurrency", "8"]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);

    wait_for(Duration::from_secs(240), "every asset rotated through Pebble", || async {
        (count_rotated(&env).await == ASSETS).then_some(())
    })
    .await;

    let root = pebble_root(&stack);
    let db = env.db().await;
    for (i, a) in assets::list(&db).await.unwrap().iter().enumerate() {
        let name = format!("dev-{i:03}");
        assert_eq!(a.system_name, name);
        let (fingerprint, not_after) = check_acme_install(
            &env.path(&format!("certs/{name}.crt")),
            &env.path(&format!("certs/{name}.key")),
            &root,
            &names(i),
        );
        assert_eq!(a.fingerprint_sha256.as_deref(), Some(fingerprint.as_str()), "{name}: inventory fingerprint");
        assert_eq!(a.not_after, Some(not_after), "{name}: inventory expiry");
        assert!(not_after > chrono::Utc::now() + chrono::Duration::days(1));
    }
    assert!(dead_letters::list(&db, true).await.unwrap().is_empty(), "nothing was dead-lettered");
    let accounts = std::fs::read_dir(env.path("acme-account")).unwrap().count();
    assert_eq!(accounts, 1, "one ACME account for the whole run");
}
