//! Dead letters end to end: a poison message, a permanently failing asset and a job that
//! crash-loops its worker all land in `certfleet.dead` with a reason; the scheduler records
//! them; `certfleet dlq retry` makes them succeed once the fault is fixed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::entity::asset::AssetState;
use certfleet_shared::db::entity::rotation::RotationStatus;
use certfleet_shared::db::{assets, history};
use certfleet_tests::*;
use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::time::Duration;

fn asset(env: &TestEnv, name: &str, settings: serde_json::Value, expires: Option<&str>) -> serde_json::Value {
    let _ = env;
    serde_json::json!({
        "system_name": name,
        "common_name": format!("{name}.fleet.test"),
        "certificate_authority": "internal",
        "host_platform": "local",
        "certificate_expiration": expires,
        "settings": settings,
    })
}

async fn publish_raw(url: &str, body: &[u8], headers: FieldTable) {
    let conn = Connection::connect(url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let props = BasicProperties::default().with_headers(headers).with_delivery_mode(2);
    let confirm = ch
        .basic_publish("certfleet.jobs".into(), "local".into(), BasicPublishOptions::default(), body, props)
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    conn.close(200, "".into()).await.unwrap();
}

fn header_text(h: &FieldTable, key: &str) -> Option<String> {
    match h.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Reads the dead letters off the queue without settling them (they return to the queue
/// when the channel closes) and returns their (class, reason) headers.
async fn peek_dead(url: &str, expected: usize) -> Vec<(String, String, bool)> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume("certfleet.dead".into(), "peek".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    while out.len() < expected {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("dead letter")
            .unwrap()
            .unwrap();
        let h = d.properties.headers().clone().unwrap_or_default();
        out.push((
            header_text(&h, "x-certfleet-error-class").unwrap_or_default(),
            header_text(&h, "x-certfleet-reason").unwrap_or_default(),
            h.inner().contains_key("traceparent") && h.inner().contains_key("x-certfleet-attempt"),
        ));
    }
    conn.close(200, "".into()).await.unwrap();
    out
}

fn dlq(env: &TestEnv) -> Vec<serde_json::Value> {
    serde_json::from_str(&env.cli_ok(&["dlq", "list", "--json"])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_and_failing_assets_are_dead_lettered_then_retried() {
    let env = TestEnv::new("");
    let broken_settings = serde_json::json!({
        "cert_path": env.path("missing/broken.crt"),
        "key_path": env.path("missing/broken.key"),
    });
    env.import(&serde_json::json!([
        asset(&env, "broken", broken_settings, None),
        // Not due, so only the poison message (which names it) ever concerns it.
        asset(&env, "victim", env.local_settings("victim"), Some("2099-01-01T00:00:00Z")),
    ]));
    let db = env.db().await;
    let victim = assets::by_name(&db, "victim").await.unwrap();

    let _worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);
    env.cli_ok(&["rotate", "broken"]);
    let poison_id = uuid::Uuid::new_v4();
    let mut named = FieldTable::default();
    named.insert("x-certfleet-job-id".into(), AMQPValue::LongString(LongString::from(poison_id.to_string())));
    named.insert("x-certfleet-asset-id".into(), AMQPValue::LongLongInt(victim.id));
    publish_raw(&env.vhost.url, b"{\"v\": 1, \"kind\": \"rotation_job\", \"body\": {\"truncated", named).await;
    publish_raw(&env.vhost.url, b"\x00\x01 not even json", FieldTable::default()).await;

    wait_for(Duration::from_secs(30), "three dead letters in certfleet.dead", || async {
        (queue_depth(&env.vhost.url, "certfleet.dead").await.0 == 3).then_some(())
    })
    .await;
    let mut peeked = peek_dead(&env.vhost.url, 3).await;
    peeked.sort();
    assert_eq!(peeked[0].0, "invalid_input");
    assert!(peeked[0].1.contains("/missing: No such file"), "the reason names the bad directory: {}", peeked[0].1);
    assert_eq!((peeked[1].0.as_str(), peeked[2].0.as_str()), ("malformed", "malformed"));
    assert!(peeked.iter().all(|p| p.2), "dead letters carry traceparent and attempt headers");

    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let letters = wait_for(Duration::from_secs(30), "three recorded dead letters", || async {
        let l = dlq(&env);
        (l.len() == 3).then_some(l)
    })
    .await;
    assert_eq!(queue_depth(&env.vhost.url, "certfleet.dead").await.0, 0, "recorded letters leave the queue");
    // Each letter's properties and headers are kept too (the dashboard's detail page).
    for l in &letters {
        let id = certfleet_proto::JobId(l["job_id"].as_str().unwrap().parse().unwrap());
        let kept = certfleet_shared::db::dead_letters::headers(&db, id).await.unwrap().expect("headers recorded");
        assert!(kept["headers"]["x-certfleet-error-class"].is_string(), "{kept}");
    }
    let broken = assets::by_name(&db, "broken").await.unwrap();
    assert_eq!(broken.state, AssetState::Dead);
    assert!(broken.last_error.unwrap().contains("/missing: No such file"));
    assert_eq!(assets::by_name(&db, "victim").await.unwrap().state, AssetState::Dead);
    let orphan = letters.iter().find(|l| l["asset_id"].is_null()).expect("the headerless poison message").clone();
    let orphan_id = orphan["job_id"].as_str().unwrap();

    let out = env.cli(&["dlq", "retry", orphan_id]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("named no asset"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Fix the fault, then retry everything pending: the poison letter (no asset) is skipped
    // with the reason, and the run succeeds because everything retryable was retried.
    std::fs::create_dir_all(env.path("missing")).unwrap();
    let out = env.cli(&["dlq", "retry", "--all"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "retry --all with a poison letter pending must exit 0:\n{stdout}\n{stderr}");
    let per_letter = |l: &&str| l.starts_with("retried ") && !l.contains("dead letter(s)");
    assert_eq!(stdout.lines().filter(per_letter).count(), 2, "{stdout}");
    assert!(stdout.contains(&format!("skipped {orphan_id}: the message named no asset")), "{stdout}");
    assert!(stdout.contains("retried 2 dead letter(s); skipped 1 that can never be retried"), "{stdout}");
    env.cli_ok(&["dlq", "discard", orphan_id]);
    assert!(dlq(&env).is_empty(), "the retried letters are no longer pending");

    wait_for(Duration::from_secs(30), "both assets rotated after the retry", || async {
        let list = assets::list(&db).await.unwrap();
        list.iter().all(|a| a.state == AssetState::Ok).then_some(())
    })
    .await;
    let root = std::fs::read_to_string(env.path("ca/root/ca.crt")).unwrap();
    check_installed(&env.path("missing/broken.crt"), &env.path("missing/broken.key"), &root, "broken.fleet.test", &[]);
    check_installed(&env.path("certs/victim.crt"), &env.path("certs/victim.key"), &root, "victim.fleet.test", &[]);
    assert!(dlq(&env).is_empty(), "no pending dead letters remain");
    let retried: Vec<serde_json::Value> =
        serde_json::from_str(&env.cli_ok(&["dlq", "list", "--all", "--json"])).unwrap();
    assert_eq!(retried.iter().filter(|l| l["status"] == "retried").count(), 2);
    let runs = history::for_asset(&db, victim.id).await.unwrap();
    assert_eq!(runs.len(), 1, "the retry reused the dead job's id: {runs:?}");
    assert_eq!((runs[0].job_id, runs[0].status, runs[0].attempt), (poison_id, RotationStatus::Rotated, 1));
    let history: serde_json::Value = serde_json::from_str(&env.cli_ok(&["history", "victim", "--json"])).unwrap();
    assert_eq!(history["jobs"][0]["job_id"], poison_id.to_string());
    assert_eq!((history["jobs"][0]["outcome"].as_str(), history["state"].as_str()), (Some("rotated"), Some("ok")));
}

/// A job that kills its worker every time is dead-lettered by the broker's delivery limit
/// (`x-delivery-limit`), and recorded with that reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_looping_job_hits_the_delivery_limit() {
    let env = TestEnv::new("");
    let mut settings = env.local_settings("crasher");
    // The reload command's parent is the worker: this "reload" crashes it.
    settings["reload_command"] = serde_json::json!("kill -9 $PPID");
    env.import(&serde_json::json!([asset(&env, "crasher", settings, None)]));
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let db = env.db().await;
    let mut crashes = 0;
    loop {
        let mut worker = env.spawn("certfleet-worker", &format!("worker-{crashes}"), &["--drivers", "local"]);
        match worker.wait_exit(Duration::from_secs(15)) {
            Some(_) => crashes += 1,
            None => break, // the job is gone from the queue: this worker survived
        }
        assert!(crashes <= 10, "the broker never dead-lettered the crash-looping job");
    }
    // x-delivery-limit = 5: the first delivery plus five redeliveries, then dead-lettered.
    assert_eq!(crashes, 6, "crashes before the broker gave up");
    let reason = wait_for(Duration::from_secs(30), "the asset marked dead", || async {
        let a = assets::by_name(&db, "crasher").await.unwrap();
        (a.state == AssetState::Dead).then(|| a.last_error.unwrap_or_default())
    })
    .await;
    assert!(reason.contains("delivery limit"), "{reason}");
    let letters = dlq(&env);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["error_class"], "delivery_limit");
}
