//! The due-ordered scan as the long-running scheduler runs it: one in-process `Scanner` on
//! one pool and one broker connection, scanning again after each reset, so that every scan
//! after the first finds its connections open and its statements prepared.

use anyhow::{Context as _, bail};
use certfleet_scheduler::leader;
use certfleet_scheduler::notify::Events;
use certfleet_scheduler::routes::Routes;
use certfleet_scheduler::scan::{ScanMode, Scanner};
use certfleet_shared::amqp::{self, Publisher};
use certfleet_shared::{Config, db};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

/// Read plus claim seconds of each scan: the first one in the process, then `runs` more.
pub struct WarmRuns {
    pub first: f64,
    pub warm: Vec<f64>,
}

/// Scans `runs + 1` times with `reset` before each; each scan must publish `due` jobs.
pub async fn scans<F, Fut>(config: &Config, due: u64, runs: usize, mut reset: F) -> anyhow::Result<WarmRuns>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let timeout = config.connect_timeout;
    let pool = db::connect_pool(&config.database_url, timeout, config.database_max_connections).await?;
    let conn = Arc::new(amqp::connect(&config.amqp_url, "certfleet-bench", timeout).await?);
    let events = Events::new(&config.notify, HashSet::new(), Publisher::open(&conn, timeout).await?);
    let mut scanner = Scanner {
        db: pool.clone(),
        publisher: Publisher::open(&conn, timeout).await?,
        routes: Arc::new(Routes::load(&config.routes_file)?),
        config: Arc::new(config.clone()),
        lease: None,
        events,
    };
    let holder = leader::holder_id();
    let mut secs = Vec::with_capacity(runs + 1);
    for run in 0..=runs {
        reset().await?;
        // Renewed before each scan, as the service does every `leader_renew`: the resets
        // (a VACUUM of the whole table on PostgreSQL) can outlast the lease.
        let lease = leader::step(&pool, &holder, scanner.lease.take(), config.leader_lease).await;
        scanner.lease = Some(lease.context("could not take the scheduler lease")?);
        let report = scanner.scan(chrono::Utc::now(), ScanMode::Due).await?;
        if report.published != due {
            bail!("in-process scan {run} published {} of {due} due jobs", report.published);
        }
        eprintln!(
            "  in-process scan {run}: read {:.3}s claim {:.3}s publish {:.3}s",
            report.read_secs, report.claim_secs, report.publish_secs
        );
        secs.push(report.read_secs + report.claim_secs);
    }
    if let Some(lease) = &scanner.lease {
        db::leader::release(&pool, lease).await?;
    }
    let _ = conn.close(200, "bench done".into()).await;
    pool.close().await?;
    Ok(WarmRuns { first: secs[0], warm: secs.split_off(1) })
}
