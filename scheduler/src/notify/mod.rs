//! Notifications: events about assets (dead and rolled-back rotations, unroutable assets,
//! expiring and expired certificates, optionally successful rotations) routed by
//! `[[notify.rule]]` to channels (Slack, webhooks, e-mail, PagerDuty).
//!
//! Emitters (the dead-letter and results consumers, the scan) publish one message per
//! event and channel to the durable `certfleet.notify` queue with publisher confirms;
//! they never talk to a channel, so a channel that is down never slows rotations. The
//! notifier ([`consumer`]) delivers them, with the same Done / Retry / Dead settlement as
//! jobs: retry tiers honouring `Retry-After`, then `certfleet.dead`, visible in `certfleet
//! dlq`. Storm control ([`storm`]) turns a burst into one digest per channel and kind.

pub mod channel;
pub mod consumer;
mod emit;
pub mod expiry;
pub mod render;
pub mod router;
pub mod storm;

pub use emit::{Emitted, Events, summary};

use certfleet_proto::{Envelope, JobId, Notification};
use certfleet_shared::amqp::topology::NOTIFY_QUEUE;
use certfleet_shared::amqp::{Outgoing, Publisher, headers, watchdog};
use certfleet_shared::db::dead_letters;
use certfleet_shared::db::entity::dead_letter::DeadLetterStatus;
use certfleet_shared::telemetry;
use sea_orm::DatabaseConnection;

/// Why a dead notification could not be retried.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// Database failure.
    #[error(transparent)]
    Db(#[from] certfleet_shared::db::DbError),
    /// Broker failure.
    #[error("publishing the notification failed: {0}")]
    Publish(#[from] certfleet_shared::amqp::AmqpError),
    /// Nothing to republish.
    #[error("{0}")]
    NotRetriable(crate::manual::Unretriable),
}

/// `certfleet dlq retry` of a dead notification: republishes it to `certfleet.notify`
/// with a fresh attempt count (same id, so a receiver that got it can drop it).
pub async fn retry_dead(db: &DatabaseConnection, publisher: &Publisher, id: JobId) -> Result<(), RetryError> {
    use crate::manual::Unretriable;
    let row = dead_letters::get(db, id).await?;
    if row.status != DeadLetterStatus::Pending {
        return Err(RetryError::NotRetriable(Unretriable::Settled(row.status.as_str())));
    }
    let Some(payload) = row.payload.as_deref() else {
        return Err(RetryError::NotRetriable(Unretriable::Unreadable("its event was not kept".into())));
    };
    let mut n = Envelope::<Notification>::decode(payload.as_bytes())
        .map_err(|e| RetryError::NotRetriable(Unretriable::Unreadable(e.to_string())))?;
    n.attempt = 1;
    n.not_before = None;
    publish(publisher, &n).await?;
    dead_letters::set_status(db, id, DeadLetterStatus::Retried).await?;
    Ok(())
}

/// Publishes one notification to `certfleet.notify` and waits for the confirm.
pub async fn publish(publisher: &Publisher, n: &Notification) -> Result<(), certfleet_shared::amqp::AmqpError> {
    let body = Envelope::encode(n);
    publisher
        .publish(Outgoing {
            exchange: "",
            routing_key: NOTIFY_QUEUE,
            body: &body,
            properties: headers::notification_properties(n, &telemetry::new_traceparent()),
        })
        .await
}

/// Runs the notifier as a process of its own (`certfleet-notifier`) until `cancel` fires.
pub async fn run_standalone(
    config: &certfleet_shared::Config,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<(), crate::SchedulerError> {
    let timeout = config.connect_timeout;
    let channels = channel::Channels::build(&config.notify)?;
    if channels.is_empty() {
        return Err(crate::SchedulerError::Stage("no notification channel is configured ([notify.channels])".into()));
    }
    let conn =
        std::sync::Arc::new(certfleet_shared::amqp::connect(&config.amqp_url, "certfleet-notifier", timeout).await?);
    // The queue exists before the consumer: a notifier may be the first process up.
    certfleet_shared::amqp::topology::declare_on(&conn, certfleet_proto::Driver::ALL, timeout).await?;
    let opened = consumer::open(&conn, config).await?;
    let stop = cancel.child_token();
    let mut dog = watchdog::Watchdog::new(conn.clone(), config.broker_recovery_timeout, timeout);
    dog.consumer(&opened.0).publisher("the notifier's publisher", &opened.1);
    let dog = dog.spawn(stop.clone());
    // A stall found by the watchdog stops the consumer, which settles what is in flight.
    let result = consumer::run(opened, channels, config, stop.clone()).await;
    stop.cancel();
    let result = match dog.await.ok().flatten() {
        Some(stalled) => Err(stalled.into()),
        None => result,
    };
    let _ =
        certfleet_shared::amqp::timed("connection.close", timeout, conn.close(200, "notifier stopping".into())).await;
    result
}
