//! The scheduler and a worker resume by themselves after RabbitMQ restarts (lapin's
//! automatic recovery), and nothing published before or after is lost.
//!
//! This restarts the machine's RabbitMQ application (`rabbitmqctl stop_app/start_app`), so
//! it lives in its own test binary: `cargo test` runs test binaries one after another.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::assets;
use certfleet_shared::db::entity::asset::AssetState;
use certfleet_tests::*;
use std::process::Command;
use std::time::Duration;

fn assets_json(env: &TestEnv, from: usize, to: usize) -> serde_json::Value {
    serde_json::Value::Array(
        (from..to)
            .map(|i| {
                let name = format!("r-{i:02}");
                serde_json::json!({
                    "system_name": name,
                    "common_name": format!("{name}.fleet.test"),
                    "certificate_authority": "internal",
                    "host_platform": "local",
                    "settings": env.local_settings(&name),
                })
            })
            .collect(),
    )
}

fn rabbit(args: &[&str]) {
    let out = Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn ok_count(env: &TestEnv) -> usize {
    let db = env.db().await;
    let n = assets::list(&db).await.unwrap().iter().filter(|a| a.state == AssetState::Ok).count();
    db.close().await.ok();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_and_worker_resume_after_a_broker_restart() {
    let env = TestEnv::new("");
    env.import(&assets_json(&env, 0, 5));
    let mut scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let mut worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);
    wait_for(Duration::from_secs(30), "the first five rotated", || async { (ok_count(&env).await == 5).then_some(()) })
        .await;

    rabbit(&["stop_app"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbit(&["start_app"]);
    rabbit(&["await_startup"]);

    // New work after the restart must flow through the same, never restarted, processes.
    env.import(&assets_json(&env, 5, 10));
    wait_for(Duration::from_secs(120), "the next five rotated after the restart", || async {
        (ok_count(&env).await == 10).then_some(())
    })
    .await;
    assert!(worker.wait_exit(Duration::ZERO).is_none(), "the worker kept running:\n{}", worker.log_text());
    assert!(scheduler.wait_exit(Duration::ZERO).is_none(), "the scheduler kept running:\n{}", scheduler.log_text());
    // stop_app closed every connection; the ones the broker lists now were reopened by the
    // very processes started before the restart.
    // The test itself holds no connection, so these are the scheduler's and the worker's.
    let out = Command::new("rabbitmqctl")
        .args(["list_connections", "-q", "--no-table-headers", "-p", &env.vhost.name, "name"])
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(names.lines().filter(|l| !l.trim().is_empty()).count(), 2, "both reconnected: {names}");
    assert!(scheduler.terminate(Duration::from_secs(20)), "the scheduler stops cleanly");
    assert!(worker.terminate(Duration::from_secs(20)), "the worker stops cleanly");
}
