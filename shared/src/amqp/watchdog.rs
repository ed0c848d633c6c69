//! The broker watchdog. lapin's automatic recovery is trusted for a bounded time only: it
//! can leave a consumer silent after a broker restart (amqp-rs/lapin#450; found here by
//! `tests/chaos.rs`), or a channel closed for good when a step of its recovery fails. Every
//! few seconds the watchdog looks at each channel a process consumes or publishes on, and
//! asks the broker about each consumed queue (a passive `queue.declare` on a channel of the
//! watchdog's own, so that no consumer or publisher channel carries declarations for lapin
//! to replay). A consumer is unhealthy while
//! - its channel is not open (closed, or still recovering);
//! - the broker does not answer about its queue in time;
//! - the broker lists no consumer on the queue: ours was lost;
//! - it has waited for work since the last probe while ready messages sat in the queue and
//!   did not go down: the broker's deliveries do not reach it.
//!
//! and a publisher while its channel is not open. Unhealthy without a break for
//! `broker_recovery_timeout`, [`Watchdog::run`] returns why, and the process stops with that
//! error so that its supervisor starts it again on a fresh connection. Nothing is lost:
//! unacked messages go back to their queues, and unconfirmed publishes are retried.

use super::subscription::{Liveness, Subscription};
use super::{AmqpError, Publisher, timed};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

/// What is watched: a consumer of a queue, or a publisher's channel.
enum Watched {
    Consumer { queue: String, channel: Channel, liveness: Arc<Liveness> },
    Publisher { label: String, channel: Channel },
}

impl Watched {
    fn name(&self) -> &str {
        match self {
            Self::Consumer { queue, .. } => queue,
            Self::Publisher { label, .. } => label,
        }
    }
}

/// What the last probes of one watched thing found.
struct State {
    bad_since: Option<Instant>,
    last_probe: Instant,
    last_ready: Option<u32>,
}

/// The channels of one process, and how long each may stay unhealthy.
pub struct Watchdog {
    conn: Arc<Connection>,
    watched: Vec<Watched>,
    recovery: Duration,
    timeout: Duration,
}

/// Time between two probes for a given recovery timeout: six probes fit in it, and a probe
/// runs every 1 to 10 s.
pub fn probe_interval(recovery: Duration) -> Duration {
    (recovery / 6).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

impl Watchdog {
    /// A watchdog over channels of `conn`; each probe waits at most `timeout`.
    pub fn new(conn: Arc<Connection>, recovery: Duration, timeout: Duration) -> Self {
        Self { conn, watched: Vec::new(), recovery, timeout }
    }

    /// Watches the consumers of `sub`.
    pub fn consumer(&mut self, sub: &Subscription) -> &mut Self {
        for queue in sub.queues() {
            self.watched.push(Watched::Consumer {
                queue: queue.clone(),
                channel: sub.channel().clone(),
                liveness: sub.liveness(),
            });
        }
        self
    }

    /// Watches the channel of `publisher`, named `label` in the error.
    pub fn publisher(&mut self, label: &str, publisher: &Publisher) -> &mut Self {
        self.watched.push(Watched::Publisher { label: label.to_owned(), channel: publisher.channel().clone() });
        self
    }

    /// Probes until `cancel` fires (None) or one watched thing has been unhealthy for the
    /// recovery timeout without a break (the error to stop on).
    pub async fn run(self, cancel: CancellationToken) -> Option<AmqpError> {
        let start = Instant::now();
        let mut states: Vec<State> =
            self.watched.iter().map(|_| State { bad_since: None, last_probe: start, last_ready: None }).collect();
        let mut probe_channel: Option<Channel> = None;
        let mut ticker = tokio::time::interval(probe_interval(self.recovery));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = ticker.tick() => {}
            }
            for (w, st) in self.watched.iter().zip(&mut states) {
                let verdict = self.probe(w, st, &mut probe_channel).await;
                let now = Instant::now();
                st.last_probe = now;
                match verdict {
                    Ok(()) => st.bad_since = None,
                    Err(reason) => {
                        let since = *st.bad_since.get_or_insert(now);
                        debug!(watched = w.name(), %reason, unhealthy_for = ?now - since, "broker watchdog");
                        if now - since >= self.recovery {
                            let (queue, after) = (w.name().to_owned(), self.recovery);
                            return Some(AmqpError::Stalled { queue, reason, after });
                        }
                    }
                }
            }
        }
    }

    /// Runs the watchdog in a task that cancels `stop` when it finds a stall, so that the
    /// process winds down (settling what is in flight) and then reports the returned error.
    /// The task ends with None once `stop` is cancelled for another reason.
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<Option<AmqpError>> {
        tokio::spawn(async move {
            let stalled = self.run(stop.clone()).await;
            if let Some(e) = &stalled {
                error!(error = %e, "broker watchdog: stopping");
                stop.cancel();
            }
            stalled
        })
    }

    /// One probe: Ok when healthy, else why not.
    async fn probe(&self, w: &Watched, st: &mut State, probe_channel: &mut Option<Channel>) -> Result<(), String> {
        let (queue, channel, liveness) = match w {
            Watched::Publisher { channel, .. } => return open(channel),
            Watched::Consumer { queue, channel, liveness } => (queue, channel, liveness),
        };
        if let Err(reason) = open(channel) {
            st.last_ready = None;
            return Err(reason);
        }
        let probe = match probe_channel.as_ref().filter(|c| c.status().connected()) {
            Some(c) => c.clone(),
            None => {
                let c = timed("channel.open", self.timeout, self.conn.create_channel())
                    .await
                    .map_err(|e| format!("cannot open a channel to ask the broker ({e})"))?;
                *probe_channel = Some(c.clone());
                c
            }
        };
        let declare = probe.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
            FieldTable::default(),
        );
        let q = match timed("queue.declare", self.timeout, declare).await {
            Ok(q) => q,
            Err(e) => {
                st.last_ready = None;
                *probe_channel = None; // a fresh one next time
                return Err(format!("the broker does not answer about the queue ({e})"));
            }
        };
        if q.consumer_count() == 0 {
            return Err("the broker lists no consumer on the queue".to_owned());
        }
        let ready = q.message_count();
        let waited_since_last_probe = liveness.waiting_since().is_some_and(|t| t <= st.last_probe);
        let stuck = ready > 0 && st.last_ready.is_some_and(|before| ready >= before);
        st.last_ready = Some(ready);
        if waited_since_last_probe && stuck {
            return Err(format!("{ready} messages are ready but none reaches the consumer, which waits for work"));
        }
        Ok(())
    }
}

/// Ok if `channel` is open; else its state, for the error.
fn open(channel: &Channel) -> Result<(), String> {
    let status = channel.status();
    if status.connected() {
        Ok(())
    } else if status.reconnecting() {
        Err("its channel is still recovering".to_owned())
    } else {
        Err("its channel is closed".to_owned())
    }
}
