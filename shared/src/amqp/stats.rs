//! Depth and consumers of every certfleet queue (for `certfleet queues` and the API's
//! `GET /api/v1/queues`), read by passive declares on one channel, plus the unacked count
//! and rates from the management API when it is configured.

use super::management::Management;
use super::{AmqpError, timed, topology};
use certfleet_proto::Driver;
use lapin::Connection;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One queue's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Messages ready for delivery.
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
    /// Delivered to a consumer, not yet acknowledged (needs `amqp_management_url`).
    pub unacked: Option<u32>,
    /// Messages published per second, as the broker last sampled it (needs
    /// `amqp_management_url`).
    pub publish_rate: Option<f64>,
    /// Messages delivered per second, as the broker last sampled it (needs
    /// `amqp_management_url`).
    pub deliver_rate: Option<f64>,
}

/// Declares the topology (so every queue exists) and reads each queue's numbers. Every
/// broker round trip is bounded by `timeout`.
pub async fn queue_stats(conn: &Connection, timeout: Duration) -> Result<Vec<QueueStats>, AmqpError> {
    queue_stats_with(conn, None, timeout).await
}

/// [`queue_stats`], with the management API's numbers when `management` is given. A
/// management API that fails leaves those numbers empty and is logged: the AMQP numbers
/// still answer.
pub async fn queue_stats_with(
    conn: &Connection,
    management: Option<&Management>,
    timeout: Duration,
) -> Result<Vec<QueueStats>, AmqpError> {
    let extra = match management {
        Some(m) => match m.queues().await {
            Ok(extra) => extra,
            Err(e) => {
                tracing::warn!(error = %e, "queue numbers without unacked counts and rates");
                Default::default()
            }
        },
        None => Default::default(),
    };
    let channel = timed("channel.open", timeout, conn.create_channel()).await?;
    topology::declare(&channel, Driver::ALL, timeout).await?;
    let mut stats = Vec::new();
    for name in topology::queue_names(Driver::ALL) {
        let opts = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let q =
            timed("queue.declare", timeout, channel.queue_declare(name.as_str().into(), opts, FieldTable::default()))
                .await?;
        let more = extra.get(name.as_str());
        stats.push(QueueStats {
            messages: q.message_count(),
            consumers: q.consumer_count(),
            unacked: more.map(|m| m.unacked),
            publish_rate: more.map(|m| m.publish_rate),
            deliver_rate: more.map(|m| m.deliver_rate),
            queue: name,
        });
    }
    let _ = channel.close(200, "done".into()).await;
    Ok(stats)
}
