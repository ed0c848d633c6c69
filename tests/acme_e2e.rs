//! End to end with a real ACME CA: the real `certfleet-scheduler` and one `certfleet-worker`
//! rotate 20 `local` assets through the `acme` issuer, against real RabbitMQ (a private
//! vhost), a SQLite inventory, Pebble and BIND9 (`scripts/stack/up.sh`, DNS-01 over RFC
//! 2136). Every certificate on disk must chain to the Pebble root fetched from Pebble's
//! management port, match the key beside it, and be the one the inventory records. The
//! worker exports its spans to the harness's OTLP receiver (no collector is installable
//! here; see `tests/traces.rs`): inside each `sign` step are the ACME order, its requests
//! (new order, authorizations, finalize) and the DNS-01 propagation wait.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::entity::asset::AssetState;
use certfleet_shared::db::{assets, dead_letters};
use certfleet_tests::acme::*;
use certfleet_tests::otlp::OtlpSink;
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
    let sink = OtlpSink::start().await.unwrap();
    let extra = format!("{}\n[telemetry]\notlp_endpoint = \"{}\"\n", issuer_toml(&stack, dir.path()), sink.endpoint());
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
    let fast = [("OTEL_BSP_SCHEDULE_DELAY", "200")];
    let _worker =
        env.spawn_with_env("certfleet-worker", "worker", &["--drivers", "local", "--concurrency", "8"], &fast);
    let _scheduler = env.spawn_with_env("certfleet-scheduler", "scheduler", &[], &fast);

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

    // The ACME spans of one rotation, inside its `sign` step.
    let spans = sink
        .wait(Duration::from_secs(30), "the spans of dev-000's job", |spans| {
            let job = spans.iter().find(|s| s.name == "job" && s.attr("asset") == "dev-000")?;
            let sign = spans.iter().find(|s| s.name == "sign" && s.parent == job.span_id)?;
            let order = spans.iter().find(|s| s.name == "acme order" && s.parent == sign.span_id)?;
            spans.iter().any(|s| s.name == "acme finalize" && s.parent == order.span_id).then(|| spans.to_vec())
        })
        .await;
    let job = spans.iter().find(|s| s.name == "job" && s.attr("asset") == "dev-000").unwrap();
    let sign = spans.iter().find(|s| s.name == "sign" && s.parent == job.span_id).unwrap();
    let order = spans.iter().find(|s| s.name == "acme order" && s.parent == sign.span_id).unwrap();
    let inside: Vec<&str> = spans.iter().filter(|s| s.parent == order.span_id).map(|s| s.name.as_str()).collect();
    for name in ["acme new_order", "acme authorization", "dns-01 propagation", "acme finalize"] {
        assert!(inside.contains(&name), "{name} inside the ACME order: {inside:?}");
    }
    // Two names, so at least two authorization requests; all in the job's trace.
    assert!(inside.iter().filter(|n| **n == "acme authorization").count() >= 2, "{inside:?}");
    assert!(spans.iter().filter(|s| s.parent == order.span_id).all(|s| s.trace_id == job.trace_id && !s.error));
}
