//! Step 5 of the rotation contract through the real binaries: after installing and
//! reloading, the worker handshakes with the asset's TLS service (`ip_address:port`, SNI =
//! common name) and accepts the rotation only if the new certificate is served. Uses a real
//! nginx (Debian's package, started on 127.0.0.1 by `scripts/stack/up.sh`) fronted by the
//! `local` driver: nginx reads the files the driver writes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::assets;
use certfleet_shared::db::entity::asset::AssetState;
use certfleet_tests::*;
use sha2::Digest as _;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_serves_the_rotated_certificate_and_a_stale_service_rolls_back() {
    let stack = Stack::start();
    let env = TestEnv::new("");
    let port: u16 = stack.get("NGINX_TLS_PORT").parse().unwrap();
    let reload = format!("nginx -c {} -s reload", stack.get("NGINX_CONF"));
    env.import(&serde_json::json!([
        {
            "system_name": "web",
            "common_name": "web.certfleet.test",
            "subject_alternative_name": ["web.certfleet.test", "127.0.0.1"],
            "certificate_authority": "internal",
            "host_platform": "local",
            "ip_address": "127.0.0.1",
            "port": port,
            "settings": {"cert_path": stack.get("NGINX_CERT"), "key_path": stack.get("NGINX_KEY"), "reload_command": reload},
        },
    ]));
    let _worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let db = env.db().await;
    let web = wait_for(Duration::from_secs(60), "web rotated", || async {
        let a = assets::by_name(&db, "web").await.unwrap();
        matches!(a.state, AssetState::Ok | AssetState::Failed | AssetState::Dead).then_some(a)
    })
    .await;
    assert_eq!(web.state, AssetState::Ok, "{:?}", web.last_error);
    // Our own handshake: nginx serves exactly the certificate the inventory recorded. A
    // graceful `nginx -s reload` lets an old worker accept for a moment after the new ones
    // start (the driver's own check already saw the new certificate), so look until it does.
    let recorded = web.fingerprint_sha256.clone().expect("a rotated asset has a fingerprint");
    wait_for(Duration::from_secs(20), "nginx to serve the recorded certificate", || async {
        let served =
            certfleet_worker::validate::served_chain("127.0.0.1", port, "web.certfleet.test", Duration::from_secs(5))
                .await
                .ok()?;
        (hex::encode(sha2::Sha256::digest(&served[0])) == recorded).then_some(())
    })
    .await;

    // A second asset claims to be served by the same nginx, which never loads its files:
    // validation fails, its files are rolled back, and the asset is failed with the cause.
    env.import(&serde_json::json!([{
        "system_name": "stale",
        "common_name": "web.certfleet.test",
        "certificate_authority": "internal",
        "host_platform": "local",
        "ip_address": "127.0.0.1",
        "port": port,
        "settings": env.local_settings("stale"),
    }]));
    let stale = wait_for(Duration::from_secs(60), "stale to finish", || async {
        let a = assets::by_name(&db, "stale").await.unwrap();
        matches!(a.state, AssetState::Ok | AssetState::Failed | AssetState::Dead).then_some(a)
    })
    .await;
    assert_eq!(stale.state, AssetState::Failed);
    let cause = stale.last_error.unwrap();
    assert!(cause.contains("TLS validation") && cause.contains(&format!("127.0.0.1:{port}")), "{cause}");
    assert!(!env.path("certs/stale.crt").exists(), "a first install that fails validation is removed");
}
