//! The worker's heartbeat: every `worker.heartbeat_interval` it publishes a
//! [`WorkerHeartbeat`] (name, drivers, concurrency, jobs in flight) to
//! `certfleet.heartbeats` through the confirmed publisher, until it is told to stop. A
//! failed beat is logged and the next one tried: beats are advisory, never fatal.

use certfleet_proto::{Driver, Envelope, WorkerHeartbeat};
use certfleet_shared::amqp::headers::CONTENT_TYPE;
use certfleet_shared::amqp::{Outgoing, Publisher, topology};
use chrono::Utc;
use lapin::BasicProperties;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// What a heartbeat says about this worker, apart from the jobs in flight.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The worker's name.
    pub worker: String,
    /// The drivers it serves.
    pub drivers: Vec<Driver>,
    /// Jobs at once.
    pub concurrency: u32,
    /// The beat period.
    pub interval: Duration,
}

/// One heartbeat now, with `in_flight` jobs running.
pub fn beat(id: &Identity, started_at: chrono::DateTime<Utc>, in_flight: u32) -> WorkerHeartbeat {
    WorkerHeartbeat {
        worker: id.worker.clone(),
        drivers: id.drivers.clone(),
        concurrency: id.concurrency,
        in_flight,
        interval_ms: u64::try_from(id.interval.as_millis()).unwrap_or(u64::MAX),
        started_at,
        sent_at: Utc::now(),
    }
}

/// Publishes a heartbeat every interval until `cancel`; `jobs` tracks the jobs in flight.
pub async fn run(publisher: Publisher, id: Identity, jobs: TaskTracker, cancel: CancellationToken) {
    let started_at = Utc::now();
    let mut ticker = tokio::time::interval(id.interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let in_flight = u32::try_from(jobs.len()).unwrap_or(u32::MAX);
        let body = Envelope::encode(&beat(&id, started_at, in_flight));
        let msg = Outgoing {
            exchange: "",
            routing_key: topology::HEARTBEATS_QUEUE,
            body: &body,
            properties: BasicProperties::default().with_content_type(CONTENT_TYPE.into()),
        };
        // The publisher bounds the publish and its confirm by its own timeout.
        match publisher.publish(msg).await {
            Ok(()) => debug!(in_flight, "heartbeat sent"),
            Err(e) => warn!(error = %e, "heartbeat not sent; trying again at the next interval"),
        }
    }
}
