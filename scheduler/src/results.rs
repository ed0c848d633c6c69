//! The reply-queue consumer: results from workers go into the inventory in batches (one
//! transaction per batch), and are acked only once committed.

use crate::SchedulerError;
use certfleet_proto::{Envelope, RotationResult};
use certfleet_shared::amqp::topology::RESULTS_QUEUE;
use certfleet_shared::amqp::{AmqpError, timed};
use certfleet_shared::db::history;
use futures_util::{FutureExt as _, StreamExt as _};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use sea_orm::DatabaseConnection;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Results applied per transaction at most.
pub const BATCH: usize = 256;

/// Opens a consumer on `queue` with `prefetch`.
pub async fn open_consumer(
    channel: &Channel,
    queue: &str,
    tag: &str,
    prefetch: u16,
    timeout: Duration,
) -> Result<Consumer, AmqpError> {
    timed("basic.qos", timeout, channel.basic_qos(prefetch, BasicQosOptions::default())).await?;
    timed(
        "basic.consume",
        timeout,
        channel.basic_consume(queue.into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default()),
    )
    .await
}

/// Consumes results until `cancel` fires.
pub async fn consume(
    db: DatabaseConnection,
    channel: Channel,
    failed_retry_after: Duration,
    timeout: Duration,
    cancel: CancellationToken,
) -> Result<(), SchedulerError> {
    let prefetch = u16::try_from(BATCH * 2).unwrap_or(u16::MAX);
    let mut consumer = open_consumer(&channel, RESULTS_QUEUE, "certfleet-scheduler-results", prefetch, timeout).await?;
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            d = consumer.next() => d,
        };
        let mut batch = match first {
            Some(Ok(d)) => vec![d],
            Some(Err(e)) => {
                warn!(error = %e, "results consumer error; waiting for recovery");
                channel.wait_for_recovery(e).await.map_err(|cause| AmqpError::Op { op: "recovery", cause })?;
                continue;
            }
            None => break,
        };
        // Take whatever else is already here, without waiting.
        while batch.len() < BATCH {
            match consumer.next().now_or_never() {
                Some(Some(Ok(d))) => batch.push(d),
                _ => break,
            }
        }
        apply_batch(&db, batch, failed_retry_after).await;
    }
    Ok(())
}

async fn apply_batch(db: &DatabaseConnection, batch: Vec<Delivery>, failed_retry_after: Duration) {
    let mut results = Vec::with_capacity(batch.len());
    for d in &batch {
        match Envelope::<RotationResult>::decode(&d.data) {
            Ok(r) => results.push(r),
            // A result we cannot read cannot be applied; the asset's lease runs out and
            // the next scan publishes it again.
            Err(e) => error!(error = %e, "dropping unreadable result"),
        }
    }
    let Some(last) = batch.last() else { return };
    match history::apply_results(db, &results, failed_retry_after).await {
        Ok(applied) => {
            let unknown = applied.iter().filter(|a| **a == history::Applied::UnknownAsset).count();
            if unknown > 0 {
                warn!(unknown, "results for assets that no longer exist were dropped");
            }
            info!(count = results.len(), "results recorded");
            if let Err(e) = last.ack(BasicAckOptions { multiple: true }).await {
                warn!(error = %e, "ack of results failed; they will be redelivered and re-applied");
            }
        }
        Err(e) => {
            error!(error = %e, "recording results failed; returning them to the queue");
            let _ = last.nack(BasicNackOptions { multiple: true, requeue: true }).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
