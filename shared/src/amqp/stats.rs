//! Depth and consumers of every certfleet queue (for `certfleet queues` and the API's
//! `GET /api/v1/queues`), read by passive declares on one channel.

use super::{AmqpError, timed, topology};
use certfleet_proto::Driver;
use lapin::Connection;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde::Serialize;
use std::time::Duration;

/// One queue's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Messages ready for delivery.
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// Declares the topology (so every queue exists) and reads each queue's numbers. Every
/// broker round trip is bounded by `timeout`.
pub async fn queue_stats(conn: &Connection, timeout: Duration) -> Result<Vec<QueueStats>, AmqpError> {
    let channel = timed("channel.open", timeout, conn.create_channel()).await?;
    topology::declare(&channel, Driver::ALL, timeout).await?;
    let mut stats = Vec::new();
    for name in topology::queue_names(Driver::ALL) {
        let opts = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let q =
            timed("queue.declare", timeout, channel.queue_declare(name.as_str().into(), opts, FieldTable::default()))
                .await?;
        stats.push(QueueStats { queue: name, messages: q.message_count(), consumers: q.consumer_count() });
    }
    let _ = channel.close(200, "done".into()).await;
    Ok(stats)
}
