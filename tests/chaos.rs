//! The chaos run at 10,000 jobs (tests/support/chaos.rs): four workers, one of them SIGKILLed
//! every 5 s and replaced, the scheduler SIGKILLed once, PostgreSQL and RabbitMQ each
//! restarted once, all on private instances. Asserts the zeros (no asset lost, no job id
//! deployed twice, every asset in exactly one terminal state), never the times: those are
//! `certfleet-bench chaos` figures in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_tests::chaos::{ChaosOpts, ChaosWorld, run};
use std::time::Duration;

/// Runs in the suite (about 2.5 minutes here). `CHAOS_ASSETS` changes the size; `CHAOS_KEEP`
/// keeps the run's directory (configs, every process's log, the device-side deploy log)
/// and `CHAOS_RUST_LOG` raises the processes' log level, to study a failure. A double
/// deploy is a job id whose reloads found two different certificates on disk; a
/// redelivery that finds the job's own pair installed reloads it again, by design, and is
/// counted apart. This test found two defects, both fixed: jobs stranded between claim and
/// publish by a scheduler SIGKILL (`scheduler::recover`), and a scheduler that recorded no
/// more results after the RabbitMQ restart (lapin's re-dial backoff, and no bound on its
/// recovery: the broker watchdog, `shared/src/amqp/watchdog.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_through_worker_scheduler_broker_and_database_faults_lose_nothing() {
    let assets = std::env::var("CHAOS_ASSETS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let world = ChaosWorld::start().expect("private RabbitMQ and PostgreSQL");
    let bin_dir = certfleet_tests::bin("certfleet-worker").parent().unwrap().to_owned();
    let opts = ChaosOpts {
        assets,
        workers: 4,
        concurrency: 32,
        faults: true,
        kill_every: Duration::from_secs(5),
        // Scheduler kill, PostgreSQL restart, RabbitMQ restart at 15, 35 and 55 % rotated:
        // every fault lands while work is still queued.
        fault_at: [0.15, 0.35, 0.55],
        deadline: Duration::from_secs(900),
        lease: Duration::from_secs(3600),
        bin_dir,
    };
    let r = run(&world, opts).await.expect("chaos run");
    eprintln!("{r:#?}");
    for kind in ["worker-kill", "scheduler-kill", "rabbitmq-restart", "postgres-restart"] {
        assert!(r.count(kind) >= 1, "{kind} happened during the run: {:?}", r.faults);
    }
    assert!(r.finished, "every asset rotated before the deadline: {} lost", r.lost);
    assert_eq!(r.lost, 0, "assets never rotated");
    assert_eq!(r.never_deployed, 0, "assets the device side never saw deployed");
    assert_eq!(r.double_deploys, 0, "job ids that deployed a second certificate ({} extra)", r.extra_deploys);
    assert_eq!(r.not_one_terminal, 0, "assets not in exactly one terminal state");
}
