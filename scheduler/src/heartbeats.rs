//! The heartbeat consumer: every worker heartbeat on `certfleet.heartbeats` goes into the
//! `workers` table (an upsert by name), then is acked. A beat that does not decode is
//! dropped (rejected without requeue): the next one from that worker replaces it anyway.

use crate::SchedulerError;
use crate::results::open_consumer;
use certfleet_proto::{Envelope, WorkerHeartbeat};
use certfleet_shared::amqp::topology::HEARTBEATS_QUEUE;
use certfleet_shared::amqp::{AmqpError, timed};
use certfleet_shared::db::workers;
use futures_util::StreamExt as _;
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use sea_orm::DatabaseConnection;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// Consumes heartbeats until `cancel` fires.
pub async fn consume(
    db: DatabaseConnection,
    channel: Channel,
    timeout: Duration,
    cancel: CancellationToken,
) -> Result<(), SchedulerError> {
    let mut consumer = open_consumer(&channel, HEARTBEATS_QUEUE, "certfleet-scheduler-heartbeats", 64, timeout).await?;
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => break,
            d = consumer.next() => d,
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                warn!(error = %e, "heartbeat consumer error; waiting for recovery");
                channel.wait_for_recovery(e).await.map_err(|cause| AmqpError::Op { op: "recovery", cause })?;
                continue;
            }
            None => break,
        };
        let beat = match Envelope::<WorkerHeartbeat>::decode(&delivery.data) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "dropping a heartbeat that does not decode");
                let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
                continue;
            }
        };
        match workers::record(&db, &beat).await {
            Ok(()) => {
                debug!(worker = %beat.worker, in_flight = beat.in_flight, "heartbeat recorded");
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
            Err(e) => {
                error!(error = %e, "recording a heartbeat failed; returning it to the queue");
                let _ = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let _ = timed("channel.close", timeout, channel.close(200, "scheduler stopping".into())).await;
    Ok(())
}
