//! End to end: the real `certfleet-scheduler` and two `certfleet-worker` processes rotate
//! `local` assets through the internal CA, against the real RabbitMQ (a private vhost) and
//! the real inventory database (SQLite, and PostgreSQL). One worker is SIGKILLed mid-run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::entity::asset::AssetState;
use certfleet_shared::db::entity::rotation::RotationStatus;
use certfleet_shared::db::{assets, dead_letters, history};
use certfleet_tests::*;
use std::time::Duration;

fn fleet(env: &TestEnv, n: usize) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let name = format!("dev-{i:03}");
            let mut settings = env.local_settings(&name);
            // A reload that takes a moment, so jobs are in flight when a worker dies.
            settings["reload_command"] = serde_json::json!(["sleep", "0.3"]);
            serde_json::json!({
                "system_name": name,
                "common_name": format!("{name}.fleet.test"),
                "subject_alternative_name": [format!("{name}.fleet.test"), format!("alt-{i}.fleet.test"), "127.0.0.1"],
                "certificate_authority": "internal",
                "host_platform": "local",
                "data_center": "dc1",
                "settings": settings,
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}

async fn count_rotated(env: &TestEnv) -> usize {
    let db = env.db().await;
    let n = assets::list(&db).await.map(|a| a.iter().filter(|a| a.state == AssetState::Ok).count()).unwrap_or(0);
    db.close().await.ok();
    n
}

/// Runs `n` assets through two workers, killing the first after `kill_after` rotations.
async fn rotate_fleet(env: TestEnv, n: usize, kill_after: usize) {
    env.import(&fleet(&env, n));
    let mut worker_a =
        env.spawn("certfleet-worker", "worker-a", &["--drivers", "local", "--concurrency", "4", "--name", "a"]);
    let _worker_b =
        env.spawn("certfleet-worker", "worker-b", &["--drivers", "local", "--concurrency", "4", "--name", "b"]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);

    let done_at_kill = wait_for(Duration::from_secs(60), "some rotations before the kill", || async {
        let done = count_rotated(&env).await;
        (done >= kill_after).then_some(done)
    })
    .await;
    worker_a.kill9();
    assert!(done_at_kill < n, "the kill must happen mid-run ({done_at_kill} of {n} were done)");

    wait_for(Duration::from_secs(120), "every asset rotated", || async {
        (count_rotated(&env).await == n).then_some(())
    })
    .await;
    assert!(worker_a.log_text().contains("rotating"), "worker a took jobs before it died");

    let db = env.db().await;
    let root = std::fs::read_to_string(env.path("ca/root/ca.crt")).expect("root exists");
    for (i, a) in assets::list(&db).await.unwrap().iter().enumerate() {
        let name = format!("dev-{i:03}");
        assert_eq!(a.system_name, name);
        let checked = check_installed(
            &env.path(&format!("certs/{name}.crt")),
            &env.path(&format!("certs/{name}.key")),
            &root,
            &format!("{name}.fleet.test"),
            &[&format!("{name}.fleet.test"), &format!("alt-{i}.fleet.test"), "127.0.0.1"],
        );
        assert_eq!(
            a.fingerprint_sha256.as_deref(),
            Some(checked.fingerprint.as_str()),
            "{name}: inventory fingerprint is the file's"
        );
        assert_eq!(a.not_after, Some(checked.not_after), "{name}: inventory expiry is the file's");
        assert_eq!(a.certificate_expiration, Some(checked.not_after));
        let lifetime = checked.not_after - a.not_before.unwrap();
        assert!(
            lifetime > chrono::Duration::days(4)
                && lifetime < chrono::Duration::days(4) + chrono::Duration::minutes(10)
        );
        let runs = history::for_asset(&db, a.id).await.unwrap();
        let rotated: Vec<_> = runs.iter().filter(|r| r.status == RotationStatus::Rotated).collect();
        assert_eq!(rotated.len(), 1, "{name}: completed exactly once, history {runs:?}");
        assert_eq!(runs.len(), 1, "{name}: no other job was published for it");
    }
    assert!(dead_letters::list(&db, true).await.unwrap().is_empty(), "nothing was dead-lettered");
    assert_eq!(queue_depth(&env.vhost.url, "certfleet.jobs.local").await.0, 0, "no job left behind");
    assert_eq!(queue_depth(&env.vhost.url, "certfleet.results").await.0, 0, "every result recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_assets_two_workers_one_killed_sqlite() {
    rotate_fleet(TestEnv::new("[worker]\nshutdown_grace = \"5s\""), 50, 10).await;
}

/// The same run with the inventory on a real PostgreSQL database (fewer assets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_assets_two_workers_one_killed_postgres() {
    let pg = postgres::PgDb::new("certfleet_e2e").await;
    let env = TestEnv::with_db(tempfile::tempdir().unwrap(), pg.url.clone(), "");
    rotate_fleet(env, 20, 4).await;
    pg.drop_db().await;
}

/// A job whose `not_before` lies ahead is parked in a retry tier (a TTL queue that
/// dead-letters back to `certfleet.jobs`) and runs once the time has come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_job_waits_in_a_retry_tier_then_runs() {
    use certfleet_proto::{Driver, Envelope, JobId};
    use certfleet_shared::amqp::{Outgoing, Publisher, headers};
    let env = TestEnv::new("");
    env.import(&serde_json::json!([{
        "system_name": "later",
        "common_name": "later.fleet.test",
        "certificate_authority": "internal",
        "host_platform": "local",
        "certificate_expiration": "2099-01-01T00:00:00Z",
        "settings": env.local_settings("later"),
    }]));
    let db = env.db().await;
    let asset = assets::by_name(&db, "later").await.unwrap();
    let _worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);

    let not_before = chrono::Utc::now() + chrono::Duration::seconds(3);
    let mut job =
        certfleet_shared::db::job_from_asset(&asset, Driver::Local, JobId::new(), 1, chrono::Utc::now()).unwrap();
    job.not_before = Some(not_before);
    let conn =
        certfleet_shared::amqp::connect(&env.vhost.url.as_str().into(), "test", Duration::from_secs(10)).await.unwrap();
    let publisher = Publisher::open(&conn, Duration::from_secs(10)).await.unwrap();
    certfleet_shared::amqp::topology::declare(publisher.channel(), Driver::ALL, Duration::from_secs(10)).await.unwrap();
    let body = Envelope::encode(&job);
    let msg = Outgoing {
        exchange: "certfleet.jobs",
        routing_key: "local",
        body: &body,
        properties: headers::job_properties(&job, &certfleet_shared::telemetry::new_traceparent()),
    };
    publisher.publish(msg).await.unwrap();

    wait_for(Duration::from_secs(10), "the job parked in the 5s tier", || async {
        (queue_depth(&env.vhost.url, "certfleet.retry.local.5s").await.0 == 1).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(30), "the delayed job rotated", || async {
        let a = assets::by_name(&db, "later").await.unwrap();
        (a.state == AssetState::Ok).then_some(())
    })
    .await;
    let runs = history::for_asset(&db, asset.id).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].job_id, job.job_id.0);
    assert!(runs[0].finished_at.unwrap() >= not_before, "ran at {:?}, not before {not_before}", runs[0].finished_at);
    assert!(
        runs[0].finished_at.unwrap() < not_before + chrono::Duration::milliseconds(1500),
        "the per-message expiration, not the 5s tier TTL, set the delay"
    );
    assert_eq!(queue_depth(&env.vhost.url, "certfleet.retry.local.5s").await.0, 0);
}

/// A failing `reload_command` after install restores the previous pair: the old files are
/// back byte for byte, the asset is `failed` with the cause, and the history says rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reload_restores_the_previous_pair() {
    let env = TestEnv::new("");
    let mut settings = env.local_settings("web");
    let marker = env.path("reloads");
    // Fails for the new pair, succeeds again once the previous pair is back in place.
    settings["reload_command"] = serde_json::json!(format!(
        "echo reload >> {m}; if [ -f {prev} ]; then cmp -s {cert} {prev} || {{ echo 'nginx: [emerg] bad cert' >&2; exit 1; }}; fi",
        m = marker.display(),
        cert = env.path("certs/web.crt").display(),
        prev = env.path("certs/web.crt.prev").display(),
    ));
    let old_cert = "-----BEGIN CERTIFICATE-----\nold\n-----END CERTIFICATE-----\n";
    std::fs::write(env.path("certs/web.crt"), old_cert).unwrap();
    std::fs::write(env.path("certs/web.key"), "old key").unwrap();
    env.import(&serde_json::json!([{
        "system_name": "web",
        "common_name": "web.fleet.test",
        "certificate_authority": "internal",
        "host_platform": "local",
        "settings": settings,
    }]));
    let _worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let db = env.db().await;
    let web = wait_for(Duration::from_secs(30), "the rotation to be rolled back", || async {
        let a = assets::by_name(&db, "web").await.unwrap();
        (a.state == AssetState::Failed).then_some(a)
    })
    .await;
    assert!(web.last_error.as_deref().unwrap_or("").contains("nginx: [emerg] bad cert"), "{:?}", web.last_error);
    assert_eq!(std::fs::read_to_string(env.path("certs/web.crt")).unwrap(), old_cert, "old certificate restored");
    assert_eq!(std::fs::read_to_string(env.path("certs/web.key")).unwrap(), "old key", "old key restored");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().lines().count(),
        2,
        "reloaded for the new pair, then for the restored one"
    );
    let runs = history::for_asset(&db, web.id).await.unwrap();
    assert_eq!((runs.len(), runs[0].status), (1, RotationStatus::RolledBack));
    assert!(dead_letters::list(&db, true).await.unwrap().is_empty(), "a rollback is a result, not a dead letter");
}

/// SIGTERM stops consuming but lets the job in flight finish and report before exiting 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_job_in_flight() {
    let env = TestEnv::new("[worker]\nshutdown_grace = \"20s\"");
    let mut settings = env.local_settings("slow");
    settings["reload_command"] = serde_json::json!(["sleep", "3"]);
    env.import(&serde_json::json!([{
        "system_name": "slow",
        "common_name": "slow.fleet.test",
        "certificate_authority": "internal",
        "host_platform": "local",
        "settings": settings,
    }]));
    let mut worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    wait_for(Duration::from_secs(20), "the job to start", || async {
        worker.log_text().contains("rotating").then_some(())
    })
    .await;
    assert!(worker.terminate(Duration::from_secs(20)), "worker exits 0 after draining:\n{}", worker.log_text());
    let db = env.db().await;
    let slow = wait_for(Duration::from_secs(10), "the drained job's result recorded", || async {
        let a = assets::by_name(&db, "slow").await.unwrap();
        (a.state == AssetState::Ok).then_some(a)
    })
    .await;
    let root = std::fs::read_to_string(env.path("ca/root/ca.crt")).unwrap();
    let checked =
        check_installed(&env.path("certs/slow.crt"), &env.path("certs/slow.key"), &root, "slow.fleet.test", &[]);
    assert_eq!(slow.fingerprint_sha256.as_deref(), Some(checked.fingerprint.as_str()));
    assert_eq!(queue_depth(&env.vhost.url, "certfleet.jobs.local").await.0, 0, "the job was acked, not returned");
}
