//! The heartbeat consumer: every worker heartbeat on `certfleet.heartbeats` goes into the
//! `workers` table (an upsert by name), then is acked. A beat that does not decode is
//! dropped (rejected without requeue): the next one from that worker replaces it anyway.

use crate::SchedulerError;
use certfleet_proto::{Envelope, WorkerHeartbeat};
use certfleet_shared::amqp::Subscription;
use certfleet_shared::db::workers;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use sea_orm::DatabaseConnection;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// Prefetch of the heartbeat consumer.
pub const PREFETCH: u16 = 64;

/// Consumes heartbeats from `sub` until `cancel` fires.
pub async fn consume(
    db: DatabaseConnection,
    mut sub: Subscription,
    cancel: CancellationToken,
) -> Result<(), SchedulerError> {
    while let Some(delivery) = sub.next(&cancel).await? {
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
    sub.close("scheduler stopping").await;
    Ok(())
}
