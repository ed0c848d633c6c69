//! End to end with a real ACME CA: the real `certfleet-scheduler` and one `certfleet-worker`
//! rotate 20 `local` assets through the `acme` issuer, against real RabbitMQ (a private
//! vhost), a SQLite inventory, Pebble and BIND9 (`scripts/stack/up.sh`, DNS-01 over RFC
//! 2136). Every certificate on disk must chain to the Pebble root fetched from Pebble's
//! management port, match the key beside it, and be the one the inventory records.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::entity::asset::AssetState;
use certfleet_shared::db::{assets, dead_letters};
use certfleet_tests::acme::*;
use certfleet_tests::*;
use std::time::Duration;

const ASSETS: usize = 20;

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
