//! The `linux-ssh` driver through the real binaries: the scheduler and a worker rotate the
//! certificate of a real nginx over a real sshd (both from `scripts/stack/up.sh`, on
//! 127.0.0.1) with the `internal` issuer. The test checks by its own TLS handshake what
//! nginx serves, byte-compares device files, and searches everything the fleet wrote (debug
//! logs, every AMQP message through RabbitMQ's firehose, the SQLite files) for the key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::entity::asset::{AssetState, Model as Asset};
use certfleet_shared::db::{assets, dead_letters};
use certfleet_tests::device::*;
use certfleet_tests::*;
use sha2::Digest as _;
use std::time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

async fn settled(env: &TestEnv, name: &str, timeout: Duration) -> Asset {
    let db = env.db().await;
    let a = wait_for(timeout, &format!("{name} to settle"), || async {
        let a = assets::by_name(&db, name).await.unwrap();
        matches!(a.state, AssetState::Ok | AssetState::Failed | AssetState::Dead).then_some(a)
    })
    .await;
    db.close().await.ok();
    a
}

fn key_bits(cert_path: &str) -> (&'static str, usize) {
    let der = first_cert_der(cert_path);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    match cert.public_key().parsed().unwrap() {
        PublicKey::EC(ec) => ("ec", ec.key_size()),
        PublicKey::RSA(rsa) => ("rsa", rsa.key_size()),
        other => panic!("unexpected key {other:?}"),
    }
}

/// Happy path with three assets (P-256 on nginx, P-384 and RSA-2048 in plain files), host
/// keys trusted on first use then enforced, a wrong pin refused, and no key byte anywhere.
/// The leaf nginx serves once it is no longer `original`. A graceful `nginx -s reload`
/// lets an old worker accept for a moment after the new ones start (the driver's own check
/// already saw the new certificate), so this looks until the old leaf is gone.
async fn new_leaf(connector: &tokio_rustls::TlsConnector, port: u16, sni: &str, original: &[u8]) -> Vec<u8> {
    wait_for(Duration::from_secs(20), "nginx to serve the new certificate", || async {
        served_leaf(connector, port, sni).await.ok().filter(|leaf| leaf.as_slice() != original)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_rotated_over_ssh_tofu_pinned_and_the_key_never_leaves_the_device() {
    let stack = Stack::start();
    let env = ssh_env(&stack, "");
    let (tapped, tap_task) = tap(&env).await;
    let port: u16 = stack.get("NGINX_TLS_PORT").parse().unwrap();
    let ssh_port: u16 = stack.get("SSH_PORT").parse().unwrap();
    let (nginx_cert, nginx_key) = (stack.get("NGINX_CERT"), stack.get("NGINX_KEY"));
    let original_leaf = first_cert_der(nginx_cert);
    let files = |name: &str| (env.path(&format!("certs/{name}.crt")), env.path(&format!("certs/{name}.key")));
    // The wrong pin: a valid ed25519 key, just not the host's (the client's own).
    let client_pub = std::fs::read_to_string(format!("{}.pub", stack.get("SSH_KEY"))).unwrap();
    let (wrong_crt, wrong_key) = files("wrong");
    std::fs::write(&wrong_crt, "old cert bytes").unwrap();
    std::fs::write(&wrong_key, "old key bytes").unwrap();
    let plain = |name: &str, alg: &str, pin: Option<&str>| {
        let (crt, key) = files(name);
        let mut settings = serde_json::json!({"host": "127.0.0.1", "ssh_port": ssh_port,
            "cert_path": crt, "key_path": key, "reload_command": ["true"]});
        if let Some(pin) = pin {
            settings["host_key"] = pin.into();
        }
        serde_json::json!({"system_name": name, "common_name": format!("{name}.certfleet.test"),
            "subject_alternative_name": [format!("{name}.certfleet.test"), "127.0.0.1"],
            "certificate_authority": "internal", "host_platform": "linux", "key_algorithm": alg, "settings": settings})
    };
    env.import(&serde_json::json!([
        {
            "system_name": "web", "common_name": "web.certfleet.test",
            "subject_alternative_name": ["web.certfleet.test", "127.0.0.1"],
            "certificate_authority": "internal", "host_platform": "linux",
            "ip_address": "127.0.0.1", "port": port,
            "settings": {"ssh_port": ssh_port, "cert_path": nginx_cert, "key_path": nginx_key,
                "reload_command": format!("nginx -c {} -s reload", stack.get("NGINX_CONF"))},
        },
        plain("p384", "ecdsa-p384", Some(stack.get("SSH_HOST_KEY_FINGERPRINT"))),
        plain("rsa", "rsa-2048", None),
        plain("wrong", "ecdsa-p256", Some(client_pub.trim())),
    ]));
    let worker = env.spawn_logging("certfleet-worker", "worker", &["--drivers", "linux-ssh"], "debug");
    let scheduler = env.spawn_logging("certfleet-scheduler", "scheduler", &[], "debug");

    let web = settled(&env, "web", Duration::from_secs(60)).await;
    assert_eq!(web.state, AssetState::Ok, "{:?}\n{}", web.last_error, worker.log_text());
    // Our own handshake: nginx serves the new certificate, the one in the file and inventory.
    let connector = tls_connector();
    let served = new_leaf(&connector, port, "web.certfleet.test", &original_leaf).await;
    assert_eq!(served, first_cert_der(nginx_cert));
    assert_eq!(web.fingerprint_sha256, Some(hex::encode(sha2::Sha256::digest(&served))));
    let root = std::fs::read_to_string(env.path("ca/root/ca.crt")).unwrap();
    let sans = ["web.certfleet.test", "127.0.0.1"];
    check_installed(nginx_cert.as_ref(), nginx_key.as_ref(), &root, "web.certfleet.test", &sans);
    assert_eq!(key_bits(nginx_cert), ("ec", 256));

    for (name, want) in [("p384", ("ec", 384)), ("rsa", ("rsa", 2048))] {
        let a = settled(&env, name, Duration::from_secs(60)).await;
        assert_eq!(a.state, AssetState::Ok, "{name}: {:?}", a.last_error);
        let (crt, key) = files(name);
        let cn = format!("{name}.certfleet.test");
        check_installed(&crt, &key, &root, &cn, &[&cn, "127.0.0.1"]);
        assert_eq!(key_bits(crt.to_str().unwrap()), want, "{name}: key algorithm");
    }

    // Trust on first use: the host key was recorded as the pin; a given pin is kept.
    let host_key = format!("ssh-ed25519 {}", stack.get("SSH_HOST_PUBKEY_B64"));
    let db = env.db().await;
    for (name, pin) in [("web", host_key.as_str()), ("rsa", &host_key), ("p384", stack.get("SSH_HOST_KEY_FINGERPRINT"))]
    {
        let a = assets::by_name(&db, name).await.unwrap();
        assert_eq!(a.settings["host_key"], pin, "{name}: pinned host key");
    }

    // A wrong pin: dead (auth), nothing changed on the device.
    let wrong = settled(&env, "wrong", Duration::from_secs(60)).await;
    assert_eq!(wrong.state, AssetState::Dead);
    let dead = dead_letters::list(&db, true).await.unwrap();
    let letter = dead.iter().find(|d| d.system_name.as_deref() == Some("wrong")).expect("a dead letter");
    assert_eq!(letter.error_class, "auth");
    assert!(letter.reason.contains("host key mismatch"), "{}", letter.reason);
    assert_eq!(std::fs::read(&wrong_crt).unwrap(), b"old cert bytes");
    assert_eq!(std::fs::read(&wrong_key).unwrap(), b"old key bytes");

    // The host key changes: the recorded pin is now enforced, and the device is untouched.
    let key_file = format!("{}/ssh/ssh_host_ed25519_key", stack.get("STATE_DIR"));
    let new_key = format!("{}/ssh/new_host_key", stack.get("STATE_DIR"));
    let status =
        std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f", &new_key]).status();
    assert!(status.unwrap().success());
    std::fs::rename(&new_key, &key_file).unwrap();
    let pid = std::fs::read_to_string(format!("{}/ssh/sshd.pid", stack.get("STATE_DIR"))).unwrap();
    assert!(std::process::Command::new("kill").args(["-HUP", pid.trim()]).status().unwrap().success());
    let before = (std::fs::read(nginx_cert).unwrap(), std::fs::read(nginx_key).unwrap());
    env.cli_ok(&["rotate", "web"]);
    let web = wait_for(Duration::from_secs(60), "web dead after the host key changed", || async {
        let a = assets::by_name(&db, "web").await.unwrap();
        (a.state == AssetState::Dead).then_some(a)
    })
    .await;
    let dead = dead_letters::list(&db, true).await.unwrap();
    let letter = dead.iter().find(|d| d.asset_id == Some(web.id)).expect("a dead letter for web");
    assert!(letter.reason.contains("host key mismatch"), "{}", letter.reason);
    assert_eq!((std::fs::read(nginx_cert).unwrap(), std::fs::read(nginx_key).unwrap()), before, "device unchanged");

    // The device keys appear nowhere: logs (debug), AMQP messages, the inventory files.
    tap_task.abort();
    let messages = tapped.lock().await.concat();
    assert!(!messages.is_empty(), "the tap saw the fleet's messages");
    let mut db_bytes = Vec::new();
    for f in files_with(env.dir.path(), &[".db", ".db-wal", ".db-shm"]) {
        db_bytes.extend(std::fs::read(f).unwrap());
    }
    assert!(!db_bytes.is_empty());
    for key_path in [nginx_key.to_owned(), files("p384").1.display().to_string(), files("rsa").1.display().to_string()]
    {
        let forms = key_fingerprints(&std::fs::read(&key_path).unwrap());
        assert_absent(&forms, worker.log_text().as_bytes(), "the worker log");
        assert_absent(&forms, scheduler.log_text().as_bytes(), "the scheduler log");
        assert_absent(&forms, &messages, "AMQP messages");
        assert_absent(&forms, &db_bytes, "the inventory database");
    }
    assert!(worker.log_text().contains("DEBUG"), "the worker logged at debug level");
    // No staged files or copies are left beside the targets.
    let leftovers = files_with(env.path("certs").as_path(), &[".tmp", ".rb"]);
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A failing `reload_command` and a failing validation each leave the old certificate
/// served by nginx and the old files in place, and the asset `failed` with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reload_and_failed_validation_keep_the_old_certificate_served() {
    let stack = Stack::start();
    let env = ssh_env(&stack, "");
    let port: u16 = stack.get("NGINX_TLS_PORT").parse().unwrap();
    let ssh_port: u16 = stack.get("SSH_PORT").parse().unwrap();
    let (cert, key, conf) = (stack.get("NGINX_CERT"), stack.get("NGINX_KEY"), stack.get("NGINX_CONF"));
    let original = (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap());
    let original_leaf = first_cert_der(cert);
    let asset = |name: &str, tls_port: &str, reload: String| {
        serde_json::json!({
            "system_name": name, "common_name": "web.certfleet.test",
            "subject_alternative_name": ["web.certfleet.test", "127.0.0.1"],
            "certificate_authority": "internal", "host_platform": "linux",
            "ip_address": "127.0.0.1", "port": tls_port.parse::<u16>().unwrap(),
            "settings": {"ssh_port": ssh_port, "cert_path": cert, "key_path": key, "reload_command": reload,
                "host_key": format!("ssh-ed25519 {}", stack.get("SSH_HOST_PUBKEY_B64"))},
        })
    };
    // nginx loads the new pair, then the command fails (it succeeds once the old pair is back).
    let failing = format!("nginx -c {conf} -s reload && cmp -s {cert} {cert}.prev");
    env.import(&serde_json::json!([asset("bad-reload", stack.get("NGINX_TLS_PORT"), failing.clone())]));
    let _worker = env.spawn("certfleet-worker", "worker", &["--drivers", "linux-ssh"]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let connector = tls_connector();
    let old_served = || async {
        wait_for(Duration::from_secs(10), "nginx to serve the old certificate", || async {
            (served_leaf(&connector, port, "web.certfleet.test").await.ok()? == original_leaf).then_some(())
        })
        .await
    };

    let a = settled(&env, "bad-reload", Duration::from_secs(60)).await;
    assert_eq!(a.state, AssetState::Failed, "{:?}", a.last_error);
    let expected = format!("reload command \"{failing}\" exited with status 1");
    assert!(a.last_error.as_deref().unwrap_or("").contains(&expected), "{:?}", a.last_error);
    old_served().await;
    assert_eq!((std::fs::read(cert).unwrap(), std::fs::read(key).unwrap()), original, "old files restored");

    // The asset says its service is on HAProxy's port, which never serves the new
    // certificate: the served-certificate check fails after nginx reloaded, and rolls back.
    let reload = format!("nginx -c {conf} -s reload");
    env.import(&serde_json::json!([asset("bad-validation", stack.get("HAPROXY_TLS_PORT"), reload)]));
    let a = settled(&env, "bad-validation", Duration::from_secs(90)).await;
    assert_eq!(a.state, AssetState::Failed, "{:?}", a.last_error);
    assert!(a.last_error.as_deref().unwrap_or("").contains("TLS validation"), "{:?}", a.last_error);
    old_served().await;
    assert_eq!((std::fs::read(cert).unwrap(), std::fs::read(key).unwrap()), original, "old files restored");
}

/// The same nginx rotated over SSH with the `acme` issuer: the key and CSR are made on the
/// device, Pebble signs the CSR after a DNS-01 challenge through the stack's BIND9, and our
/// own handshake sees a certificate that chains to Pebble's root and carries the device key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_rotated_over_ssh_with_the_acme_issuer() {
    let stack = Stack::start();
    let keys = tempfile::tempdir().unwrap();
    let env = ssh_env(&stack, &certfleet_tests::acme::issuer_toml(&stack, keys.path()));
    let port: u16 = stack.get("NGINX_TLS_PORT").parse().unwrap();
    let ssh_port: u16 = stack.get("SSH_PORT").parse().unwrap();
    let (nginx_cert, nginx_key) = (stack.get("NGINX_CERT"), stack.get("NGINX_KEY"));
    let original_leaf = first_cert_der(nginx_cert);
    let name = format!("web.{}", stack.get("ZONE"));
    env.import(&serde_json::json!([{
        "system_name": "web-acme", "common_name": name, "subject_alternative_name": [name],
        "certificate_authority": "pebble", "host_platform": "linux",
        "ip_address": "127.0.0.1", "port": port,
        "settings": {"ssh_port": ssh_port, "cert_path": nginx_cert, "key_path": nginx_key,
            "host_key": format!("ssh-ed25519 {}", stack.get("SSH_HOST_PUBKEY_B64")),
            "reload_command": format!("nginx -c {} -s reload", stack.get("NGINX_CONF"))},
    }]));
    let worker = env.spawn("certfleet-worker", "worker", &["--drivers", "linux-ssh"]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);

    let web = settled(&env, "web-acme", Duration::from_secs(120)).await;
    assert_eq!(web.state, AssetState::Ok, "{:?}\n{}", web.last_error, worker.log_text());
    let served = new_leaf(&tls_connector(), port, &name, &original_leaf).await;
    assert_eq!(served, first_cert_der(nginx_cert), "the served leaf is the installed one");
    assert_eq!(web.fingerprint_sha256, Some(hex::encode(sha2::Sha256::digest(&served))));
    let root = certfleet_tests::acme::pebble_root(&stack);
    let (fingerprint, not_after) = certfleet_tests::acme::check_acme_install(
        nginx_cert.as_ref(),
        nginx_key.as_ref(),
        &root,
        std::slice::from_ref(&name),
    );
    assert_eq!(web.fingerprint_sha256.as_deref(), Some(fingerprint.as_str()));
    assert_eq!(web.not_after, Some(not_after));
    assert!(web.issuer_dn.as_deref().unwrap_or("").contains("Pebble"), "{:?}", web.issuer_dn);
}
