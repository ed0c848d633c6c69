//! The chaos run at 10,000 jobs (tests/support/chaos.rs): four workers, one of them SIGKILLed
//! every 5 s and replaced, the scheduler SIGKILLed once, PostgreSQL and RabbitMQ each
//! restarted once, all on private instances. Asserts the zeros (no asset lost, no job id
//! deployed twice, every asset in exactly one terminal state), never the times: those are
//! `certfleet-bench chaos` figures in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_tests::chaos::{ChaosOpts, ChaosWorld, run};
use std::time::Duration;

/// Ignored in the suite for now. It found a real defect: a scheduler SIGKILLed while its
/// first scan was still publishing left committed claims whose jobs never reached the
/// broker, and those assets waited out their lease (2,973 of 10,000 in one run). A new
/// leader now publishes such jobs again under their own ids (`scheduler::recover`, tested
/// by `tests/scheduler_failover.rs`), but this run has not been repeated since, and it takes
/// about 22 minutes on this 2-core machine in debug, which does not fit the CI budget. Run it
/// with `cargo test --test chaos -- --ignored`.
#[ignore = "22 min here; not yet re-run since the stranded-jobs fix (see the doc comment)"]
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
    assert_eq!(r.double_deploys, 0, "job ids deployed twice ({} extra deploys)", r.extra_deploys);
    assert_eq!(r.not_one_terminal, 0, "assets not in exactly one terminal state");
}
