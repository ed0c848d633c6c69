//! The notifier: consumes `certfleet.notify`, holds bursts for a digest, delivers through
//! the channel, and settles each delivery with the worker's settlement
//! ([`certfleet_shared::amqp::settle`]): delivered → ack; a passing fault → the retry tier
//! for its delay (Retry-After wins over backoff); attempts exhausted or a permanent
//! refusal → `certfleet.dead` with class, reason and attempts. A delivery is acked only
//! once what it led to was confirmed by the broker.

use super::channel::{ChannelError, Channels};
use super::render::Links;
use super::storm::Storm;
use crate::SchedulerError;
use certfleet_proto::{Envelope, ErrorClass, Notification, NotificationId};
use certfleet_shared::Config;
use certfleet_shared::amqp::headers::{self, TRACEPARENT};
use certfleet_shared::amqp::settle::{self, Settled};
use certfleet_shared::amqp::topology::NOTIFY_QUEUE;
use certfleet_shared::amqp::{Publisher, Subscription, timed};
use certfleet_shared::config::RetryConfig;
use certfleet_shared::metrics::{Metric, counter};
use certfleet_shared::telemetry;
use chrono::Utc;
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Deliveries in flight at once (all channels together).
const CONCURRENCY: usize = 16;
/// Unacked messages the broker may push; held events of a storm count against it.
const PREFETCH: u16 = 2000;
/// Ids remembered as delivered, so a redelivery after a lost ack is not sent twice.
const REMEMBERED: usize = 10_000;

/// How a delivery ended.
#[derive(Debug)]
enum Outcome {
    /// The service took it.
    Done(String),
    /// Try again later (after `after`, if the service said when).
    Retry { after: Option<Duration>, cause: String },
    /// Permanent: dead-letter it.
    Dead { class: ErrorClass, reason: String },
}

impl From<ChannelError> for Outcome {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::Retry { after, cause } => Outcome::Retry { after, cause },
            ChannelError::Rejected(reason) => Outcome::Dead { class: ErrorClass::Rejected, reason },
        }
    }
}

impl Outcome {
    /// The shared settlement's view (a delivered notification has no reply to publish).
    fn settlement(self) -> settle::Outcome<'static> {
        match self {
            Outcome::Done(_) => settle::Outcome::Done(None),
            Outcome::Retry { after, cause } => settle::Outcome::Retry { after, cause },
            Outcome::Dead { class, reason } => settle::Outcome::Dead { class, reason },
        }
    }
}

/// Ids delivered lately.
#[derive(Default)]
struct Recent {
    set: HashSet<NotificationId>,
    order: VecDeque<NotificationId>,
}

impl Recent {
    fn insert(&mut self, id: NotificationId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            if self.order.len() > REMEMBERED
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

/// Delivery state shared by the delivery tasks.
struct Notifier {
    channels: Channels,
    links: Links,
    publisher: Publisher,
    retry: RetryConfig,
    timeout: Duration,
    recent: Mutex<Recent>,
}

/// Opens what the notifier needs on `conn` (whose topology is declared): a confirmed
/// publisher, then its consumer.
pub async fn open(conn: &Connection, config: &Config) -> Result<(Subscription, Publisher), SchedulerError> {
    let timeout = config.connect_timeout;
    let publisher = Publisher::open(conn, timeout).await?;
    let channel = timed("channel.open", timeout, conn.create_channel()).await?;
    let sub = Subscription::open(
        channel,
        NOTIFY_QUEUE,
        "certfleet-notifier",
        PREFETCH,
        timeout,
        config.broker_recovery_timeout,
    )
    .await?;
    Ok((sub, publisher))
}

/// Runs the notifier until `cancel` fires: consumes on `channel`, publishes retries, dead
/// letters and digests with `publisher`.
pub async fn run(
    (mut sub, publisher): (Subscription, Publisher),
    channels: Channels,
    config: &Config,
    cancel: CancellationToken,
) -> Result<(), SchedulerError> {
    let n = &config.notify;
    let notifier = Arc::new(Notifier {
        channels,
        links: Links::new(&config.api.base_url()),
        publisher,
        retry: RetryConfig { max_attempts: n.max_attempts, base_delay: n.base_delay, max_delay: n.max_delay },
        timeout: n.request_timeout,
        recent: Mutex::new(Recent::default()),
    });
    let mut storm: Storm<Delivery> = Storm::new(n.digest_after, n.digest_window);
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let tracker = TaskTracker::new();
    info!(channels = notifier.channels.names().collect::<Vec<_>>().join(", "), "notifier ready");
    loop {
        let wake = storm
            .next_close()
            .map_or(tokio::time::Instant::now() + Duration::from_secs(3600), tokio::time::Instant::from_std);
        let next = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => {
                for closed in storm.close_due(Instant::now(), Utc::now()) {
                    notifier.queue_digest(closed.digest, closed.held).await;
                }
                continue;
            }
            d = sub.next(&cancel) => d?,
        };
        let Some(delivery) = next else { break };
        let decoded = Envelope::<Notification>::decode(&delivery.data);
        let delivery = match &decoded {
            // Fresh events only: retries and digests were admitted once already.
            Ok(n) if n.digest.is_none() && n.not_before.is_none() && n.attempt == 1 => {
                match storm.admit(n, delivery, Instant::now(), Utc::now()) {
                    Some(d) => d,
                    None => continue, // held for the window's digest
                }
            }
            _ => delivery,
        };
        let permit = Arc::clone(&permits).acquire_owned().await;
        let notifier = Arc::clone(&notifier);
        tracker.spawn(async move {
            let _permit = permit;
            let _ = notifier.handle(delivery, decoded.ok()).await;
        });
    }
    // Held events go back to the queue when the channel closes; deliveries in flight finish.
    tracker.close();
    tracker.wait().await;
    sub.close("notifier stopping").await;
    Ok(())
}

impl Notifier {
    async fn handle(&self, delivery: Delivery, n: Option<Notification>) -> Settled {
        let tp = telemetry::child_traceparent(headers::get_str(&delivery.properties, TRACEPARENT).as_deref());
        let Some(n) = n else {
            let reason = "not a readable certfleet notification".to_owned();
            return self.settle(&delivery, None, Outcome::Dead { class: ErrorClass::Malformed, reason }, &tp).await;
        };
        if let Some(not_before) = n.not_before {
            let wait = (not_before - Utc::now()).to_std().unwrap_or_default();
            if !wait.is_zero() {
                return self.park(&delivery, &n, wait, &tp).await;
            }
        }
        let outcome = self.deliver(&n).await;
        self.settle(&delivery, Some(&n), outcome, &tp).await
    }

    async fn deliver(&self, n: &Notification) -> Outcome {
        if self.recent.lock().await.set.contains(&n.id) {
            return Outcome::Done("delivered already".into());
        }
        let Some(channel) = self.channels.get(&n.channel) else {
            return Outcome::Dead {
                class: ErrorClass::Unsupported,
                reason: format!("no channel named \"{}\" in this notifier's config", n.channel),
            };
        };
        match tokio::time::timeout(self.timeout * 3, channel.send(n, &self.links)).await {
            Ok(Ok(sent)) => {
                self.recent.lock().await.insert(n.id);
                Outcome::Done(sent.detail)
            }
            Ok(Err(e)) => e.into(),
            Err(_) => Outcome::Retry { after: None, cause: format!("{} timed out", channel.kind()) },
        }
    }

    /// Settles through the one shared mapping from outcome to broker actions.
    async fn settle(&self, delivery: &Delivery, n: Option<&Notification>, outcome: Outcome, tp: &str) -> Settled {
        if let (Some(n), Outcome::Done(detail)) = (n, &outcome) {
            info!(id = %n.id, channel = %n.channel, event = %n.event, asset = n.system_name(), %detail, "notification delivered");
        }
        // Only configured channel names become label values (a message naming another is
        // counted as `unknown`), so the label stays a bounded set.
        let channel =
            n.filter(|n| self.channels.get(&n.channel).is_some()).map_or("unknown".to_owned(), |n| n.channel.clone());
        let settled =
            settle::settle(&self.publisher, delivery, n, outcome.settlement(), &self.retry, NOTIFY_QUEUE, tp).await;
        let result = match settled {
            Settled::Reported => "delivered",
            Settled::Retried => "retried",
            Settled::DeadLettered => "dead",
            Settled::Deferred | Settled::Requeued => return settled,
        };
        counter!(Metric::Notifications.name(), "channel" => channel, "result" => result).increment(1);
        settled
    }

    /// Parks `n` in the retry tier serving `wait`; a longer wait rides in `not_before`.
    async fn park(&self, delivery: &Delivery, n: &Notification, wait: Duration, tp: &str) -> Settled {
        settle::park(&self.publisher, delivery, n, wait, tp, Settled::Deferred).await
    }

    /// Queues a window's digest, then settles the events it summarizes.
    async fn queue_digest(&self, digest: Notification, held: Vec<Delivery>) {
        let count = held.len();
        match super::publish(&self.publisher, &digest).await {
            Ok(()) => {
                info!(channel = %digest.channel, event = %digest.event, count, "storm: events summarized in one digest");
                for d in held {
                    if let Err(e) = d.ack(BasicAckOptions::default()).await {
                        warn!(error = %e, "ack of a digested notification failed");
                    }
                }
            }
            Err(e) => {
                for d in held {
                    settle::requeue(&d, &e).await;
                }
            }
        }
    }
}
