//! The scheduler's life: connect, declare, consume results and dead letters, keep (or wait
//! for) the leader lease, and, while leader, scan on an interval until cancelled.

use crate::notify::channel::{Channels, pagerduty_names};
use crate::notify::{self, Events};
use crate::policy::PolicyInputs;
use crate::routes::Routes;
use crate::scan::{ScanMode, ScanReport, Scanner};
use crate::{SchedulerError, dead, gauges, heartbeats, leader, recompute, recover, results};
use certfleet_proto::Driver;
use certfleet_shared::Config;
use certfleet_shared::amqp::{self, AmqpError, Publisher, Subscription, timed, topology, watchdog};
use certfleet_shared::db::{self, leader as lease_db};
use chrono::Utc;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

/// How long the scheduler waits at shutdown for its tasks to finish.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// How the scheduler runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Scan once and return the report (takes the lease for that scan, refuses if another
    /// scheduler holds it).
    pub once: bool,
    /// With `once`: the full pass instead of the due-ordered scan.
    pub full: bool,
}

/// Runs the scheduler. With `once`, performs a single scan and returns its report.
pub async fn run(config: &Config, once: bool, cancel: CancellationToken) -> Result<Option<ScanReport>, SchedulerError> {
    run_with(config, RunOptions { once, full: false }, cancel).await
}

/// The `scheduler_state` key of the last full pass's time (RFC 3339).
const LAST_FULL_KEY: &str = "last_full_scan";

/// Which scan is next: the full pass once `scan_full_interval` has passed since the last.
async fn next_mode(db: &DatabaseConnection, config: &Config) -> ScanMode {
    let last = match lease_db::state_get(db, LAST_FULL_KEY).await {
        Ok(v) => v.and_then(|v| chrono::DateTime::parse_from_rfc3339(&v).ok()),
        Err(e) => {
            warn!(error = %e, "cannot read the last full pass time");
            return ScanMode::Due;
        }
    };
    let interval = chrono::Duration::from_std(config.scan_full_interval).unwrap_or(chrono::Duration::days(1));
    match last {
        Some(t) if Utc::now() - t.with_timezone(&Utc) < interval => ScanMode::Due,
        Some(_) => ScanMode::Full,
        None => {
            // A new inventory: start the clock rather than walk everything at once.
            let _ = lease_db::state_set(db, LAST_FULL_KEY, &Utc::now().to_rfc3339()).await;
            ScanMode::Due
        }
    }
}

/// Runs the scheduler with options.
pub async fn run_with(
    config: &Config,
    opts: RunOptions,
    cancel: CancellationToken,
) -> Result<Option<ScanReport>, SchedulerError> {
    let timeout = config.connect_timeout;
    // Channels read their secrets now: a bad channel refuses the start, naming the key.
    let channels = Channels::build(&config.notify)?;
    let mut routes = Arc::new(Routes::load(&config.routes_file)?);
    let shared_config = Arc::new(config.clone());
    let database = db::connect_pool(&config.database_url, timeout, config.database_max_connections).await?;
    let conn = Arc::new(amqp::connect(&config.amqp_url, "certfleet-scheduler", timeout).await?);
    let publisher = Publisher::open(&conn, timeout).await?;
    topology::declare_on(&conn, Driver::ALL, timeout).await?;
    // Events go out on a channel of their own, so they never queue behind job publishes.
    let events_publisher = Publisher::open(&conn, timeout).await?;
    let events = Events::new(&config.notify, pagerduty_names(&config.notify), events_publisher.clone());

    let holder = leader::holder_id();
    if opts.once {
        let Some(lease) = leader::step(&database, &holder, None, config.leader_lease).await else {
            let held = lease_db::current(&database).await?;
            let _ = timed("connection.close", timeout, conn.close(200, "lease held".into())).await;
            return Err(SchedulerError::Stage(match held {
                Some(l) => format!(
                    "another scheduler ({}) holds the scheduler lease until {}; --once scans only while no scheduler runs",
                    l.holder,
                    l.expires_at.to_rfc3339()
                ),
                None => "could not take the scheduler lease".to_owned(),
            }));
        };
        let mode = if opts.full { ScanMode::Full } else { ScanMode::Due };
        let scanner = Scanner {
            db: database.clone(),
            publisher: publisher.clone(),
            routes,
            config: shared_config,
            lease: Some(lease.clone()),
            events,
        };
        // The lease is renewed while the scan runs, as in the service: a scan longer than
        // the lease (the full pass of 10,000,000 assets takes about 28 s) would otherwise
        // lose it halfway, and its fenced claims would take nothing.
        let (lease_tx, _lease_rx) = tokio::sync::watch::channel(Some(lease.clone()));
        let keeping = cancel.child_token();
        let keeper = tokio::spawn(leader::keep(
            database.clone(),
            holder.clone(),
            config.leader_lease,
            config.leader_renew,
            lease_tx,
            keeping.clone(),
        ));
        let report = scanner.scan(Utc::now(), mode).await;
        // Stopping the keeper gives the lease up.
        keeping.cancel();
        if keeper.await.is_err() {
            let _ = lease_db::release(&database, &lease).await;
        }
        if report.is_ok() && mode == ScanMode::Full {
            lease_db::state_set(&database, LAST_FULL_KEY, &Utc::now().to_rfc3339()).await?;
        }
        let _ = timed("connection.close", timeout, conn.close(200, "scan done".into())).await;
        return Ok(Some(report?));
    }

    let tracker = TaskTracker::new();
    let consumers = cancel.child_token();
    // A consumer that stops on its own (recovery failed) stops the scheduler, so that a
    // supervisor restarts it rather than it scanning on without recording results.
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::channel::<String>(4);
    {
        let recovery = config.broker_recovery_timeout;
        let open = async |queue: &str, tag: &str, prefetch: u16| -> Result<Subscription, AmqpError> {
            let channel = timed("channel.open", timeout, conn.create_channel()).await?;
            Subscription::open(channel, queue, tag, prefetch, timeout, recovery).await
        };
        let mut dog = watchdog::Watchdog::new(conn.clone(), recovery, timeout);
        dog.publisher("the job publisher", &publisher).publisher("the event publisher", &events_publisher);
        let sub = open(topology::RESULTS_QUEUE, "certfleet-scheduler-results", results::PREFETCH).await?;
        dog.consumer(&sub);
        let (db, c, retry_after, failed, ev) =
            (database.clone(), consumers.clone(), config.failed_retry_after, failed_tx.clone(), events.clone());
        tracker.spawn(async move {
            if let Err(e) = results::consume(db, sub, retry_after, c, ev).await {
                let _ = failed.send(format!("results consumer stopped: {e}")).await;
            }
        });
        let sub = open(topology::DEAD_QUEUE, "certfleet-scheduler-dead", dead::PREFETCH).await?;
        dog.consumer(&sub);
        let (db, c, failed, ev) = (database.clone(), consumers.clone(), failed_tx.clone(), events.clone());
        tracker.spawn(async move {
            if let Err(e) = dead::consume(db, sub, c, ev).await {
                let _ = failed.send(format!("dead-letter consumer stopped: {e}")).await;
            }
        });
        let sub = open(topology::HEARTBEATS_QUEUE, "certfleet-scheduler-heartbeats", heartbeats::PREFETCH).await?;
        dog.consumer(&sub);
        let (db, c, failed) = (database.clone(), consumers.clone(), failed_tx.clone());
        tracker.spawn(async move {
            if let Err(e) = heartbeats::consume(db, sub, c).await {
                let _ = failed.send(format!("heartbeat consumer stopped: {e}")).await;
            }
        });
        if !channels.is_empty() && config.notify.deliver_in_scheduler {
            let opened = notify::consumer::open(&conn, config).await?;
            dog.consumer(&opened.0).publisher("the notifier's publisher", &opened.1);
            let (c, failed, cfg) = (consumers.clone(), failed_tx.clone(), config.clone());
            tracker.spawn(async move {
                if let Err(e) = notify::consumer::run(opened, channels, &cfg, c).await {
                    let _ = failed.send(format!("notifier stopped: {e}")).await;
                }
            });
        }
        // lapin's recovery, bounded: a consumer whose broker session stays broken stops
        // the scheduler like a consumer that failed.
        let (c, failed) = (consumers.clone(), failed_tx);
        tracker.spawn(async move {
            if let Some(e) = dog.run(c).await {
                let _ = failed.send(e.to_string()).await;
            }
        });
    }
    let first = leader::step(&database, &holder, None, config.leader_lease).await;
    let (lease_tx, mut lease_rx) = tokio::sync::watch::channel(first);
    tracker.spawn(leader::keep(
        database.clone(),
        holder.clone(),
        config.leader_lease,
        config.leader_renew,
        lease_tx,
        consumers.clone(),
    ));
    if config.metrics.scheduler_listen.is_some() {
        let refresher = gauges::Refresher {
            db: database.clone(),
            conn: conn.clone(),
            config: config.clone(),
            lease: lease_rx.clone(),
        };
        tracker.spawn(refresher.run(consumers.clone()));
    }
    info!(interval = ?config.scan_interval, %holder, "scheduler ready");
    let inputs = PolicyInputs::of(config);
    let mut recomputing: Option<tokio::task::JoinHandle<()>> = None;

    let mut ticker = tokio::time::interval(config.scan_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failure = None;
    // The lease epoch whose stranded jobs were published again.
    let mut recovered_epoch = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(reason) = failed_rx.recv() => {
                error!(%reason, "stopping the scheduler");
                failure = Some(reason);
                break;
            }
            _ = ticker.tick() => {}
            // Just took over the lease: scan now rather than at the next tick.
            Ok(()) = lease_rx.changed() => {}
        }
        // Route changes apply at the next scan; a broken file keeps the previous table.
        match Routes::load(&config.routes_file) {
            Ok(r) => routes = Arc::new(r),
            Err(e) => error!(error = %e, "keeping the previous routing table"),
        }
        let Some(lease) = lease_rx.borrow_and_update().clone() else {
            debug!("standing by: another scheduler holds the lease");
            recovered_epoch = None;
            continue;
        };
        // New policy inputs: recompute every stored time once, in the background.
        if recomputing.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
            match recompute::needed(&database, &inputs).await {
                Ok(true) => {
                    let (db, inputs, page) = (database.clone(), inputs.clone(), config.scan_page_size);
                    recomputing = Some(tokio::spawn(async move {
                        if let Err(e) = recompute::run(&db, &inputs, page).await {
                            error!(error = %e, "recomputing next_due_at failed; retrying at the next scan");
                        }
                    }));
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "cannot read the policy fingerprint"),
            }
        }
        let mode = next_mode(&database, config).await;
        let epoch = lease.epoch;
        let scanner = Scanner {
            db: database.clone(),
            publisher: publisher.clone(),
            routes: routes.clone(),
            config: shared_config.clone(),
            events: events.clone(),
            lease: Some(lease),
        };
        // A new term: first the jobs an earlier leader stranded between claim and confirm.
        if recovered_epoch != Some(epoch) {
            match recover::republish_unconfirmed(&scanner, Utc::now()).await {
                Ok(_) => recovered_epoch = Some(epoch),
                Err(e) => warn!(error = %e, "cannot publish the stranded jobs again; retrying at the next scan"),
            }
        }
        match scanner.scan(Utc::now(), mode).await {
            Ok(_) if mode == ScanMode::Full => {
                if let Err(e) = lease_db::state_set(&database, LAST_FULL_KEY, &Utc::now().to_rfc3339()).await {
                    warn!(error = %e, "cannot record the full pass time");
                }
            }
            Ok(_) => {}
            Err(e) => error!(error = %e, "scan failed; retrying at the next interval"),
        }
    }
    info!("scheduler stopping");
    if let Some(task) = recomputing {
        task.abort(); // safe: each write is conditional, and the fingerprint is stored last
    }
    consumers.cancel();
    tracker.close();
    // The consumers settle what they hold; a task stuck on a broken broker or database
    // session must not keep the process from exiting (a supervisor restarts it).
    if tokio::time::timeout(SHUTDOWN_DRAIN, tracker.wait()).await.is_err() {
        warn!(after = ?SHUTDOWN_DRAIN, "scheduler tasks still running at shutdown; exiting without them");
    }
    if failure.is_none() {
        let _ = timed("connection.close", timeout, conn.close(200, "scheduler stopping".into())).await;
    }
    match failure {
        Some(reason) => Err(SchedulerError::Stage(reason)),
        None => Ok(None),
    }
}
