//! The scheduler's life: connect, declare, consume results and dead letters, and scan on
//! an interval until cancelled.

use crate::notify::channel::{Channels, pagerduty_names};
use crate::notify::{self, Events};
use crate::routes::Routes;
use crate::scan::{ScanReport, Scanner};
use crate::{SchedulerError, dead, results};
use certfleet_proto::Driver;
use certfleet_shared::Config;
use certfleet_shared::amqp::{self, Publisher, timed, topology};
use certfleet_shared::db;
use chrono::Utc;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

/// Runs the scheduler. With `once`, performs a single scan and returns its report.
pub async fn run(config: &Config, once: bool, cancel: CancellationToken) -> Result<Option<ScanReport>, SchedulerError> {
    let timeout = config.connect_timeout;
    // Channels read their secrets now: a bad channel refuses the start, naming the key.
    let channels = Channels::build(&config.notify)?;
    let mut routes = Arc::new(Routes::load(&config.routes_file)?);
    let shared_config = Arc::new(config.clone());
    let database = db::connect(&config.database_url, timeout).await?;
    let conn = amqp::connect(&config.amqp_url, "certfleet-scheduler", timeout).await?;
    let publisher = Publisher::open(&conn, timeout).await?;
    topology::declare(publisher.channel(), Driver::ALL, timeout).await?;
    // Events go out on a channel of their own, so they never queue behind job publishes.
    let events = Events::new(&config.notify, pagerduty_names(&config.notify), Publisher::open(&conn, timeout).await?);

    if once {
        let scanner =
            Scanner { db: database.clone(), publisher: publisher.clone(), routes, config: shared_config, events };
        let report = scanner.scan(Utc::now()).await?;
        let _ = timed("connection.close", timeout, conn.close(200, "scan done".into())).await;
        return Ok(Some(report));
    }

    let tracker = TaskTracker::new();
    let consumers = cancel.child_token();
    // A consumer that stops on its own (recovery failed) stops the scheduler, so that a
    // supervisor restarts it rather than it scanning on without recording results.
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::channel::<String>(2);
    {
        let channel = timed("channel.open", timeout, conn.create_channel()).await?;
        let (db, c, retry_after, failed, ev) =
            (database.clone(), consumers.clone(), config.failed_retry_after, failed_tx.clone(), events.clone());
        tracker.spawn(async move {
            if let Err(e) = results::consume(db, channel, retry_after, timeout, c, ev).await {
                let _ = failed.send(format!("results consumer stopped: {e}")).await;
            }
        });
        let channel = timed("channel.open", timeout, conn.create_channel()).await?;
        let (db, c, failed, ev) = (database.clone(), consumers.clone(), failed_tx.clone(), events.clone());
        tracker.spawn(async move {
            if let Err(e) = dead::consume(db, channel, timeout, c, ev).await {
                let _ = failed.send(format!("dead-letter consumer stopped: {e}")).await;
            }
        });
        if !channels.is_empty() && config.notify.deliver_in_scheduler {
            let opened = notify::consumer::open(&conn, timeout).await?;
            let (c, failed, cfg) = (consumers.clone(), failed_tx, config.clone());
            tracker.spawn(async move {
                if let Err(e) = notify::consumer::run(opened, channels, &cfg, c).await {
                    let _ = failed.send(format!("notifier stopped: {e}")).await;
                }
            });
        }
    }
    info!(interval = ?config.scan_interval, "scheduler ready");

    let mut ticker = tokio::time::interval(config.scan_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failure = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(reason) = failed_rx.recv() => {
                error!(%reason, "stopping the scheduler");
                failure = Some(reason);
                break;
            }
            _ = ticker.tick() => {}
        }
        // Route changes apply at the next scan; a broken file keeps the previous table.
        match Routes::load(&config.routes_file) {
            Ok(r) => routes = Arc::new(r),
            Err(e) => error!(error = %e, "keeping the previous routing table"),
        }
        let scanner = Scanner {
            db: database.clone(),
            publisher: publisher.clone(),
            routes: routes.clone(),
            config: shared_config.clone(),
            events: events.clone(),
        };
        if let Err(e) = scanner.scan(Utc::now()).await {
            error!(error = %e, "scan failed; retrying at the next interval");
        }
    }
    info!("scheduler stopping");
    consumers.cancel();
    tracker.close();
    tracker.wait().await;
    let _ = timed("connection.close", timeout, conn.close(200, "scheduler stopping".into())).await;
    match failure {
        Some(reason) => Err(SchedulerError::Stage(reason)),
        None => Ok(None),
    }
}
