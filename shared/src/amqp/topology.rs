//! The certfleet topology, declared idempotently by every process at start-up.
//!
//! | name | kind | purpose |
//! |---|---|---|
//! | `certfleet.jobs` | direct exchange | routing key = driver name |
//! | `certfleet.jobs.<driver>` | quorum queue | jobs of one driver, with `x-delivery-limit` |
//! | `certfleet.results` | quorum queue | the reply queue |
//! | `certfleet.retry.<driver>.<tier>` | quorum queue with TTL | delayed retries, dead-lettered back to `certfleet.jobs` |
//! | `certfleet.dead` | fanout exchange + quorum queue | dead letters, read by one active consumer |
//! | `certfleet.heartbeats` | quorum queue with TTL | worker heartbeats, recorded by the scheduler |
//! | `certfleet.notify` | quorum queue | notifications, one message per event and channel |
//! | `certfleet.retry.notify.<tier>` | quorum queue with TTL | delayed notification retries, back to `certfleet.notify` |

use super::{AmqpError, timed};
use crate::backoff::{RETRY_TIERS, tier_label};
use certfleet_proto::Driver;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ExchangeKind};
use std::time::Duration;

/// The jobs exchange.
pub const JOBS_EXCHANGE: &str = "certfleet.jobs";
/// The reply queue.
pub const RESULTS_QUEUE: &str = "certfleet.results";
/// The dead-letter exchange.
pub const DEAD_EXCHANGE: &str = "certfleet.dead";
/// The dead-letter queue.
pub const DEAD_QUEUE: &str = "certfleet.dead";
/// The worker heartbeat queue (published to through the default exchange).
pub const HEARTBEATS_QUEUE: &str = "certfleet.heartbeats";
/// A heartbeat nobody read within this many milliseconds is dropped: it is stale anyway.
pub const HEARTBEAT_TTL_MS: i64 = 60_000;
/// Length bound of the heartbeat queue (the oldest beats go first past it).
pub const HEARTBEAT_MAX_LENGTH: i64 = 10_000;
/// Deliveries of one job message before the broker dead-letters it (a job that keeps
/// crashing or stalling its workers). RabbitMQ 3.10 has no default, so it is explicit.
pub const JOB_DELIVERY_LIMIT: i64 = 5;
/// Length bound of each job queue; past it publishes are refused (nacked), never dropped.
pub const JOB_QUEUE_MAX_LENGTH: i64 = 1_000_000;

/// The notification queue (default exchange, routing key = its name).
pub const NOTIFY_QUEUE: &str = "certfleet.notify";
/// Deliveries of one notification before the broker dead-letters it.
pub const NOTIFY_DELIVERY_LIMIT: i64 = 5;

/// The retry queue of notifications for one tier.
pub fn notify_retry_queue(tier: Duration) -> String {
    format!("certfleet.retry.notify.{}", tier_label(tier))
}

/// The job queue of a driver.
pub fn job_queue(driver: Driver) -> String {
    format!("{JOBS_EXCHANGE}.{driver}")
}

/// The retry queue of a driver for one tier.
pub fn retry_queue(driver: Driver, tier: Duration) -> String {
    format!("certfleet.retry.{driver}.{}", tier_label(tier))
}

/// Every certfleet queue for `drivers`, for dashboards and `certfleet queues`.
pub fn queue_names(drivers: &[Driver]) -> Vec<String> {
    let mut names =
        vec![RESULTS_QUEUE.to_owned(), DEAD_QUEUE.to_owned(), NOTIFY_QUEUE.to_owned(), HEARTBEATS_QUEUE.to_owned()];
    names.extend(RETRY_TIERS.iter().map(|t| notify_retry_queue(*t)));
    for d in drivers {
        names.push(job_queue(*d));
        names.extend(RETRY_TIERS.iter().map(|t| retry_queue(*d, *t)));
    }
    names
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

/// Arguments that make dead-lettering lossless: at-least-once needs reject-publish overflow.
fn quorum_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut entries = vec![("x-queue-type", text("quorum"))];
    entries.extend_from_slice(extra);
    table(&entries)
}

/// Declares the topology (see [`declare`]) on a channel of its own, closed afterwards. The
/// exchanges and queues are durable, so they outlive the channel; and a channel that
/// declared nothing has nothing for lapin's recovery to replay: replayed declarations
/// can fail while a cluster elects a queue's new leader, and would close a publisher's
/// channel for good (`tests/cluster_failover.rs`).
pub async fn declare_on(conn: &Connection, drivers: &[Driver], timeout: Duration) -> Result<(), AmqpError> {
    let channel = timed("channel.open", timeout, conn.create_channel()).await?;
    let declared = declare(&channel, drivers, timeout).await;
    let _ = timed("channel.close", timeout, channel.close(200, "topology declared".into())).await;
    declared
}

/// Declares the exchanges and the shared queues plus the queues of `drivers`.
pub async fn declare(channel: &Channel, drivers: &[Driver], timeout: Duration) -> Result<(), AmqpError> {
    let exchange = |name: &'static str, kind: ExchangeKind| {
        channel.exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
            FieldTable::default(),
        )
    };
    timed("exchange.declare", timeout, exchange(JOBS_EXCHANGE, ExchangeKind::Direct)).await?;
    timed("exchange.declare", timeout, exchange(DEAD_EXCHANGE, ExchangeKind::Fanout)).await?;

    let results_args = quorum_args(&[]);
    timed("queue.declare", timeout, channel.queue_declare(RESULTS_QUEUE.into(), durable(), results_args)).await?;
    let dead_args = quorum_args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]);
    timed("queue.declare", timeout, channel.queue_declare(DEAD_QUEUE.into(), durable(), dead_args)).await?;
    timed(
        "queue.bind",
        timeout,
        channel.queue_bind(
            DEAD_QUEUE.into(),
            DEAD_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await?;

    let beats_args = quorum_args(&[
        ("x-message-ttl", AMQPValue::LongLongInt(HEARTBEAT_TTL_MS)),
        ("x-max-length", AMQPValue::LongLongInt(HEARTBEAT_MAX_LENGTH)),
    ]);
    timed("queue.declare", timeout, channel.queue_declare(HEARTBEATS_QUEUE.into(), durable(), beats_args)).await?;

    declare_notify(channel, timeout).await?;

    for driver in drivers {
        let queue = job_queue(*driver);
        let args = quorum_args(&[
            ("x-delivery-limit", AMQPValue::LongLongInt(JOB_DELIVERY_LIMIT)),
            ("x-dead-letter-exchange", text(DEAD_EXCHANGE)),
            ("x-dead-letter-strategy", text("at-least-once")),
            ("x-overflow", text("reject-publish")),
            ("x-max-length", AMQPValue::LongLongInt(JOB_QUEUE_MAX_LENGTH)),
        ]);
        timed("queue.declare", timeout, channel.queue_declare(queue.as_str().into(), durable(), args)).await?;
        timed(
            "queue.bind",
            timeout,
            channel.queue_bind(
                queue.as_str().into(),
                JOBS_EXCHANGE.into(),
                driver.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        for tier in RETRY_TIERS {
            let ttl = i64::try_from(tier.as_millis()).unwrap_or(i64::MAX);
            let args = quorum_args(&[
                ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
                ("x-dead-letter-exchange", text(JOBS_EXCHANGE)),
                ("x-dead-letter-routing-key", text(driver.as_str())),
                ("x-dead-letter-strategy", text("at-least-once")),
                ("x-overflow", text("reject-publish")),
            ]);
            let name = retry_queue(*driver, *tier);
            timed("queue.declare", timeout, channel.queue_declare(name.as_str().into(), durable(), args)).await?;
        }
    }
    Ok(())
}

/// Declares `certfleet.notify` and its retry tiers: the same guarantees as a job queue
/// (delivery limit, at-least-once dead-lettering to `certfleet.dead`, reject-publish).
async fn declare_notify(channel: &Channel, timeout: Duration) -> Result<(), AmqpError> {
    let args = quorum_args(&[
        ("x-delivery-limit", AMQPValue::LongLongInt(NOTIFY_DELIVERY_LIMIT)),
        ("x-dead-letter-exchange", text(DEAD_EXCHANGE)),
        ("x-dead-letter-strategy", text("at-least-once")),
        ("x-overflow", text("reject-publish")),
        ("x-max-length", AMQPValue::LongLongInt(JOB_QUEUE_MAX_LENGTH)),
    ]);
    timed("queue.declare", timeout, channel.queue_declare(NOTIFY_QUEUE.into(), durable(), args)).await?;
    for tier in RETRY_TIERS {
        let ttl = i64::try_from(tier.as_millis()).unwrap_or(i64::MAX);
        let args = quorum_args(&[
            ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(NOTIFY_QUEUE)),
            ("x-dead-letter-strategy", text("at-least-once")),
            ("x-overflow", text("reject-publish")),
        ]);
        let name = notify_retry_queue(*tier);
        timed("queue.declare", timeout, channel.queue_declare(name.as_str().into(), durable(), args)).await?;
    }
    Ok(())
}
