//! Settling a delivery: the one mapping from how its work ended to broker actions, shared
//! by the worker (rotation jobs) and the notifier (notifications).
//!
//! - done → publish the reply, if there is one, then ack;
//! - a passing fault → the retry tier for its delay (a delay the cause asked for, such as
//!   `Retry-After`, wins over the jittered backoff), or the dead letters once the attempts
//!   are spent;
//! - permanent → `certfleet.dead` with class, reason and attempts.
//!
//! A delivery is acked only once what it led to was confirmed by the broker; if that
//! publish fails, the delivery goes back to its queue.

use super::topology::DEAD_EXCHANGE;
use super::topology::{notify_retry_queue, retry_queue};
use super::{AmqpError, Outgoing, Publisher, headers};
use crate::backoff::{delay_for_attempt, tier_for};
use crate::config::RetryConfig;
use certfleet_proto::{Envelope, ErrorClass, Notification, RotationJob};
use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use std::time::Duration;
use tracing::{debug, warn};

/// A message that can be parked in a retry tier and tried again.
pub trait Retriable: Clone {
    /// What the logs call it (`job <id>`, `notification <id> for slack`).
    fn label(&self) -> String;
    /// This delivery's attempt number, 1 for the first.
    fn attempt(&self) -> u32;
    /// Sets the attempt number.
    fn set_attempt(&mut self, attempt: u32);
    /// Sets the earliest time of the next try (a wait longer than the longest tier).
    fn set_not_before(&mut self, at: DateTime<Utc>);
    /// The retry queue serving `tier` for this message.
    fn retry_queue(&self, tier: Duration) -> String;
    /// The body and properties of this message.
    fn encode(&self, traceparent: &str) -> (Vec<u8>, BasicProperties);
    /// The driver label of `certfleet_job_retries_total`, for rotation jobs.
    fn metric_driver(&self) -> Option<&'static str> {
        None
    }
}

impl Retriable for RotationJob {
    fn label(&self) -> String {
        format!("job {} (asset {})", self.job_id, self.system_name)
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn set_attempt(&mut self, attempt: u32) {
        self.attempt = attempt;
    }

    fn set_not_before(&mut self, at: DateTime<Utc>) {
        self.not_before = Some(at);
    }

    fn retry_queue(&self, tier: Duration) -> String {
        retry_queue(self.driver, tier)
    }

    fn encode(&self, traceparent: &str) -> (Vec<u8>, BasicProperties) {
        (Envelope::encode(self), headers::job_properties(self, traceparent))
    }

    fn metric_driver(&self) -> Option<&'static str> {
        Some(self.driver.as_str())
    }
}

impl Retriable for Notification {
    fn label(&self) -> String {
        format!("notification {} ({} for {})", self.id, self.event, self.channel)
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn set_attempt(&mut self, attempt: u32) {
        self.attempt = attempt;
    }

    fn set_not_before(&mut self, at: DateTime<Utc>) {
        self.not_before = Some(at);
    }

    fn retry_queue(&self, tier: Duration) -> String {
        notify_retry_queue(tier)
    }

    fn encode(&self, traceparent: &str) -> (Vec<u8>, BasicProperties) {
        (Envelope::encode(self), headers::notification_properties(self, traceparent))
    }
}

/// How a delivery's work ended.
pub enum Outcome<'a> {
    /// Finished; publish this reply (if any) before the ack.
    Done(Option<Box<Outgoing<'a>>>),
    /// Try again later (after `after`, if the cause said when).
    Retry {
        /// The delay the cause asked for.
        after: Option<Duration>,
        /// What went wrong.
        cause: String,
    },
    /// Permanent: dead-letter it.
    Dead {
        /// The error class.
        class: ErrorClass,
        /// Why.
        reason: String,
    },
}

/// What settling a delivery did, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Done (its reply published, if any), delivery acked.
    Reported,
    /// Requeued into a retry tier, delivery acked.
    Retried,
    /// Deferred (its `not_before` lies ahead), delivery acked.
    Deferred,
    /// Dead letter published, delivery acked.
    DeadLettered,
    /// Publishing failed; the delivery was returned to its queue.
    Requeued,
}

/// Settles `delivery`, whose decoded message is `msg` (`None`: it could not be read), by
/// `outcome` under `retry`. A dead letter is routed on `certfleet.dead` with `dead_key`.
pub async fn settle<M: Retriable>(
    publisher: &Publisher,
    delivery: &Delivery,
    msg: Option<&M>,
    outcome: Outcome<'_>,
    retry: &RetryConfig,
    dead_key: &str,
    traceparent: &str,
) -> Settled {
    match outcome {
        Outcome::Done(Some(reply)) => publish_then_ack(publisher, delivery, *reply, Settled::Reported).await,
        Outcome::Done(None) => {
            ack(delivery).await;
            Settled::Reported
        }
        Outcome::Retry { after, cause } => {
            let Some(m) = msg else {
                return dead(publisher, delivery, None::<&M>, ErrorClass::Internal, &cause, dead_key, traceparent)
                    .await;
            };
            if m.attempt() >= retry.max_attempts {
                let reason = format!("gave up after {} attempts; last error: {cause}", m.attempt());
                return dead(
                    publisher,
                    delivery,
                    Some(m),
                    ErrorClass::RetriesExhausted,
                    &reason,
                    dead_key,
                    traceparent,
                )
                .await;
            }
            let backoff = delay_for_attempt(m.attempt(), retry.base_delay, retry.max_delay, &mut rand::rng());
            let wait = after.unwrap_or(backoff);
            warn!(what = %m.label(), attempt = m.attempt(), retry_in = ?wait, %cause, "will be retried");
            let mut next = m.clone();
            next.set_attempt(m.attempt() + 1);
            park(publisher, delivery, &next, wait, traceparent, Settled::Retried).await
        }
        Outcome::Dead { class, reason } => dead(publisher, delivery, msg, class, &reason, dead_key, traceparent).await,
    }
}

/// Parks `msg` in the retry tier serving `wait`; a wait longer than the longest tier is
/// carried in `not_before`, and the message is parked again until then. Acks `delivery`
/// once the parked copy is confirmed, and reports `how`.
pub async fn park<M: Retriable>(
    publisher: &Publisher,
    delivery: &Delivery,
    msg: &M,
    wait: Duration,
    traceparent: &str,
    how: Settled,
) -> Settled {
    let tier = tier_for(wait);
    if let (Settled::Retried, Some(driver)) = (how, msg.metric_driver()) {
        let tier = crate::backoff::tier_label(tier);
        crate::metrics::counter!(crate::metrics::Metric::JobRetries.name(), "driver" => driver, "tier" => tier)
            .increment(1);
    }
    let mut parked = msg.clone();
    if wait > tier {
        parked.set_not_before(Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX));
    }
    let (body, properties) = parked.encode(traceparent);
    let expiration = wait.min(tier).as_millis().max(1).to_string();
    let queue = parked.retry_queue(tier);
    let out = Outgoing {
        exchange: "",
        routing_key: &queue,
        body: &body,
        properties: properties.with_expiration(expiration.into()),
    };
    publish_then_ack(publisher, delivery, out, how).await
}

/// Publishes the delivery as it came, with class, reason and attempts, to the dead letters.
async fn dead<M: Retriable>(
    publisher: &Publisher,
    delivery: &Delivery,
    msg: Option<&M>,
    class: ErrorClass,
    reason: &str,
    dead_key: &str,
    traceparent: &str,
) -> Settled {
    let attempts = msg.map_or(1, Retriable::attempt);
    let what = msg.map_or_else(|| "an unreadable message".to_owned(), Retriable::label);
    warn!(%what, %class, %reason, "dead-lettered");
    let props = headers::dead_properties(&delivery.properties, class, reason, attempts, traceparent);
    let out = Outgoing { exchange: DEAD_EXCHANGE, routing_key: dead_key, body: &delivery.data, properties: props };
    publish_then_ack(publisher, delivery, out, Settled::DeadLettered).await
}

/// Waits before each further try of an outcome publish that the broker refused (nack) or
/// did not confirm in time. A cluster that has just lost a node nacks publishes to a queue
/// whose new leader it is still electing, for a few seconds (`tests/cluster_failover.rs`);
/// returning the message at once instead would spend the job's delivery limit on the
/// broker's trouble and dead-letter good work.
const REPUBLISH_DELAYS: [Duration; 4] =
    [Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)];

/// Publishes `out` (awaiting the confirm), then acks. A refused or unconfirmed publish is
/// tried again after each of [`REPUBLISH_DELAYS`] (a duplicate is harmless: outcomes are
/// idempotent); after the last, or on any other failure, the message goes back to its queue.
pub async fn publish_then_ack(publisher: &Publisher, delivery: &Delivery, out: Outgoing<'_>, how: Settled) -> Settled {
    let mut delays = REPUBLISH_DELAYS.iter();
    loop {
        match publisher.publish(out.clone()).await {
            Ok(()) => {
                ack(delivery).await;
                return how;
            }
            Err(e @ (AmqpError::Nack { .. } | AmqpError::Timeout { .. })) if let Some(delay) = delays.next() => {
                debug!(error = %e, ?delay, "the broker did not take the outcome; trying again");
                tokio::time::sleep(*delay).await;
            }
            Err(e) => {
                requeue(delivery, &e).await;
                return Settled::Requeued;
            }
        }
    }
}

async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        // The broker will redeliver; jobs are idempotent and notifications carry their id.
        warn!(error = %e, "ack failed after the outcome was settled");
    }
}

/// Returns `delivery` to its queue because its outcome could not be published.
pub async fn requeue(delivery: &Delivery, cause: &AmqpError) {
    warn!(error = %cause, "could not publish the outcome; returning the message to its queue");
    if let Err(e) = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await {
        warn!(error = %e, "nack failed; the broker redelivers when the channel closes");
    }
}
