//! The worker's life: connect, declare, consume with bounded concurrency, and on
//! cancellation stop consuming, finish the jobs in flight (bounded by the grace period),
//! then close.

use crate::consumer::Handler;
use crate::driver::DriverSet;
use crate::issuer::{IssuerError, IssuerSet};
use crate::rotation::JobContext;
use certfleet_proto::Driver;
use certfleet_shared::Config;
use certfleet_shared::amqp::{self, AmqpError, Publisher, Subscription, timed, topology, watchdog};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Command-line choices that override the config.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Drivers to serve (empty: `worker.drivers` from config, or all).
    pub drivers: Vec<Driver>,
    /// Jobs at once (None: `worker.concurrency`).
    pub concurrency: Option<u16>,
    /// Name reported in results and shown in the broker's connection list.
    pub name: String,
}

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The broker failed in a way recovery could not handle.
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    /// An issuer could not be set up.
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// A driver's worker-side settings are unusable.
    #[error("driver setup: {0}")]
    Driver(crate::driver::DriverError),
}

// The driver's error is in the message; it is not also a `source()`.
impl From<crate::driver::DriverError> for WorkerError {
    fn from(e: crate::driver::DriverError) -> Self {
        Self::Driver(e)
    }
}

/// Runs a worker until `cancel` fires.
pub async fn run(config: &Config, opts: WorkerOptions, cancel: CancellationToken) -> Result<(), WorkerError> {
    let kinds = if opts.drivers.is_empty() { config.worker.drivers.clone() } else { opts.drivers.clone() };
    let drivers = DriverSet::new(&kinds, &config.drivers)?;
    let served = drivers.kinds();
    let concurrency = opts.concurrency.unwrap_or(config.worker.concurrency).max(1);
    let issuers = IssuerSet::from_config(&config.issuers).await?;
    let timeout = config.connect_timeout;

    let conn = Arc::new(amqp::connect(&config.amqp_url, &opts.name, timeout).await?);
    let publisher = Publisher::open(&conn, timeout).await?;
    topology::declare_on(&conn, &served, timeout).await?;

    let channel = timed("channel.open", timeout, conn.create_channel()).await?;
    timed("basic.qos", timeout, channel.basic_qos(concurrency, BasicQosOptions::default())).await?;
    let mut consumers = Vec::new();
    let mut tags = Vec::new();
    let mut queues = Vec::new();
    for driver in &served {
        let queue = topology::job_queue(*driver);
        let tag = format!("{}-{driver}", opts.name);
        let consumer = timed(
            "basic.consume",
            timeout,
            channel.basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        consumers.push(consumer);
        tags.push(tag);
        queues.push(queue);
    }
    let recovery = config.broker_recovery_timeout;
    let deliveries = Box::pin(futures_util::stream::select_all(consumers));
    let mut sub = Subscription::new(deliveries, channel.clone(), queues, timeout, recovery);
    // lapin's recovery, bounded: a broker session that stays broken stops the worker (its
    // jobs in flight finish first) with the watchdog's reason.
    let stop = cancel.child_token();
    let mut dog = watchdog::Watchdog::new(conn.clone(), recovery, timeout);
    dog.consumer(&sub).publisher("the result publisher", &publisher);
    let dog = dog.spawn(stop.clone());
    info!(drivers = ?served.iter().map(|d| d.as_str()).collect::<Vec<_>>(), concurrency, "worker ready");

    let heartbeat = crate::heartbeat::Identity {
        worker: opts.name.clone(),
        drivers: served.clone(),
        concurrency: u32::from(concurrency),
        interval: config.worker.heartbeat_interval,
    };
    let beats_publisher = publisher.clone();
    let handler = Arc::new(Handler {
        ctx: JobContext { drivers, issuers },
        publisher,
        retry: config.retry.clone(),
        job_timeout: config.worker.job_timeout,
        worker_name: opts.name.clone(),
    });
    let permits = Arc::new(Semaphore::new(usize::from(concurrency)));
    let tracker = TaskTracker::new();
    // The heartbeat stops with the consumers: a stopping worker falls silent, and is shown
    // as gone once 3 intervals pass.
    let beats_cancel = cancel.child_token();
    let beats = tokio::spawn(crate::heartbeat::run(beats_publisher, heartbeat, tracker.clone(), beats_cancel.clone()));

    let mut failure = None;
    loop {
        // Take the permit before accepting work, so at most `concurrency` jobs run.
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        match sub.next(&stop).await {
            Ok(Some(delivery)) => {
                let handler = handler.clone();
                tracker.spawn(async move {
                    handler.handle(delivery).await;
                    drop(permit);
                });
            }
            Ok(None) => break,
            Err(e) => {
                warn!(error = %e, "stopping");
                failure = Some(e);
                break;
            }
        }
    }

    beats_cancel.cancel();
    let _ = beats.await;
    info!("stopping: no new jobs; waiting for jobs in flight");
    // Stopped for a broken broker session: there is no broker to say goodbye to, and each
    // call would only wait out its timeout.
    let broker_broken = failure.is_some() || !cancel.is_cancelled();
    for tag in tags.iter().filter(|_| !broker_broken) {
        let cancel_consumer = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default());
        if let Err(e) = timed("basic.cancel", timeout, cancel_consumer).await {
            warn!(error = %e, "could not cancel consumer");
        }
    }
    tracker.close();
    let grace = config.worker.shutdown_grace;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(?grace, "jobs still running after the grace period; the broker will redeliver them");
    }
    if !broker_broken {
        // Closing the channel returns any prefetched, unstarted deliveries to their queues.
        let _ = timed("channel.close", timeout, channel.close(200, "worker stopping".into())).await;
        let _ = timed("connection.close", timeout, conn.close(200, "worker stopping".into())).await;
    }
    info!("worker stopped");
    stop.cancel();
    let stalled = dog.await.ok().flatten();
    match failure.or(stalled) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
