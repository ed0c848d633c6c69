//! The scheduler and a worker resume by themselves after RabbitMQ restarts, ten times in a
//! row, and nothing published before or after is lost. After every restart each process
//! holds exactly one connection to the broker, and neither its sockets nor its memory grow.
//! A broker gone for longer than `broker_recovery_timeout` stops both with a clear error.
//!
//! The broker is a private node started for this test (tests/support/rabbit.rs), so
//! `stop_app`/`start_app` never disturbs other tests on the machine's RabbitMQ.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::assets;
use certfleet_shared::db::entity::asset::AssetState;
use certfleet_tests::procinfo::{rss_kib, socket_count, tcp_connections_to};
use certfleet_tests::rabbit::RabbitNode;
use certfleet_tests::*;
use std::time::Duration;

const RESTARTS: usize = 10;

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

async fn ok_count(env: &TestEnv) -> usize {
    let db = env.db().await;
    let n = assets::list(&db).await.unwrap().iter().filter(|a| a.state == AssetState::Ok).count();
    db.close().await.ok();
    n
}

/// What one process holds: TCP connections to the broker, sockets, RSS.
fn holdings(pid: u32, port: u16) -> (usize, usize, u64) {
    (tcp_connections_to(pid, port), socket_count(pid), rss_kib(pid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_and_worker_resume_after_ten_broker_restarts_with_one_connection_each() {
    let node = RabbitNode::start("restart");
    let env = TestEnv::on_node(&node, &node.url("{vhost}"), "");
    env.import(&assets_json(&env, 0, 3));
    let mut scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let mut worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);
    wait_for(Duration::from_secs(60), "the first three rotated", || async {
        (ok_count(&env).await == 3).then_some(())
    })
    .await;
    let pids = [("scheduler", scheduler.pid()), ("worker", worker.pid())];
    let mut first: Vec<(usize, usize, u64)> = Vec::new();

    for round in 1..=RESTARTS {
        node.restart_app(Duration::from_secs(1)); // blocks this test's thread only
        // New work after the restart must flow through the same, never restarted, processes.
        let done = 3 + round;
        env.import(&assets_json(&env, done - 1, done));
        wait_for(Duration::from_secs(120), &format!("asset {done} rotated after restart {round}"), || async {
            (ok_count(&env).await == done).then_some(())
        })
        .await;
        // Work flowed, so both processes are connected; a leaked or duplicate connection
        // would show here as a second connection of one process.
        let listed = node.connections(&env.vhost.name);
        let now: Vec<_> = pids.iter().map(|(_, pid)| holdings(*pid, node.port)).collect();
        eprintln!("restart {round}: broker lists {} connections; (tcp, sockets, rss KiB) = {now:?}", listed.len());
        for ((label, _), (tcp, _, _)) in pids.iter().zip(&now) {
            assert_eq!(
                *tcp, 1,
                "after restart {round} the {label} holds one broker connection; broker lists {listed:?}"
            );
        }
        assert_eq!(listed.len(), 2, "after restart {round} the broker lists one connection per process: {listed:?}");
        if round == 1 {
            first = now;
        } else {
            for ((label, _), (was, is)) in pids.iter().zip(first.iter().zip(&now)) {
                assert!(is.1 <= was.1, "the {label}'s sockets grew from {} to {} by restart {round}", was.1, is.1);
            }
        }
    }
    // Memory: allocator noise is a few MiB; a leak per reconnect would be far more.
    let last: Vec<_> = pids.iter().map(|(_, pid)| holdings(*pid, node.port)).collect();
    for ((label, _), (was, is)) in pids.iter().zip(first.iter().zip(&last)) {
        eprintln!("{label}: RSS {} KiB after restart 1, {} KiB after restart {RESTARTS}", was.2, is.2);
        assert!(is.2 < was.2 + 16 * 1024, "the {label}'s RSS grew from {} to {} KiB", was.2, is.2);
    }
    assert!(worker.wait_exit(Duration::ZERO).is_none(), "the worker kept running:\n{}", worker.log_text());
    assert!(scheduler.wait_exit(Duration::ZERO).is_none(), "the scheduler kept running:\n{}", scheduler.log_text());
    assert!(scheduler.terminate(Duration::from_secs(20)), "the scheduler stops cleanly");
    assert!(worker.terminate(Duration::from_secs(20)), "the worker stops cleanly");
}

/// The broker watchdog (shared/src/amqp/watchdog.rs): a broker gone for longer than
/// `broker_recovery_timeout` stops the scheduler and the worker with an error that says so,
/// instead of leaving them waiting on lapin's recovery; started again once the broker is
/// back, as a service manager would, they pick the work up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_gone_past_the_recovery_timeout_stops_scheduler_and_worker_with_a_clear_error() {
    let node = RabbitNode::start("gone");
    let env =
        TestEnv::on_node(&node, &node.url("{vhost}"), "broker_recovery_timeout = \"5s\"\nconnect_timeout = \"2s\"");
    env.import(&assets_json(&env, 0, 1));
    let mut scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let mut worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);
    wait_for(Duration::from_secs(60), "the first asset rotated", || async {
        (ok_count(&env).await == 1).then_some(())
    })
    .await;

    node.ctl(&["stop_app"]).unwrap();
    let stopped = std::time::Instant::now();
    for (label, proc) in [("scheduler", &mut scheduler), ("worker", &mut worker)] {
        let status = proc.wait_exit(Duration::from_secs(60));
        let log = proc.log_text();
        let status = status.unwrap_or_else(|| panic!("the {label} stopped by itself within 60 s:\n{log}"));
        assert!(!status.success(), "the {label} exits with an error: {status}");
        assert!(
            log.contains("the broker connection did not recover within 5s"),
            "the {label}'s log says why it stopped:\n{log}"
        );
        assert!(!log.contains("guest:guest"), "no password in the {label}'s log");
        eprintln!("the {label} stopped {:?} after the broker did", stopped.elapsed());
    }
    let took = stopped.elapsed();
    assert!(took >= Duration::from_secs(5), "not before the recovery timeout: {took:?}");

    node.ctl(&["start_app"]).unwrap();
    node.ctl(&["await_startup"]).unwrap();
    env.import(&assets_json(&env, 1, 2));
    let mut scheduler = env.spawn("certfleet-scheduler", "scheduler-2", &[]);
    let mut worker = env.spawn("certfleet-worker", "worker-2", &["--drivers", "local"]);
    wait_for(Duration::from_secs(60), "the second asset rotated by the restarted processes", || async {
        (ok_count(&env).await == 2).then_some(())
    })
    .await;
    assert!(scheduler.terminate(Duration::from_secs(20)), "the scheduler stops cleanly");
    assert!(worker.terminate(Duration::from_secs(20)), "the worker stops cleanly");
}
