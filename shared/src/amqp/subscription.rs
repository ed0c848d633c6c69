//! A consumer and the channel it lives on, read through lapin's automatic recovery with a
//! bound: every consumer loop of the scheduler and the worker takes its deliveries here, so
//! a consumer error, a recovery that does not finish and a consumer the broker cancelled are
//! handled in one place. The [`Liveness`] it keeps feeds the [`super::watchdog`].

use super::{AmqpError, timed};
use futures_util::{FutureExt as _, Stream, StreamExt as _};
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The deliveries of one or more consumers on one channel.
pub type Deliveries = Pin<Box<dyn Stream<Item = lapin::Result<Delivery>> + Send>>;

/// Since when a consumer loop has been waiting for a delivery (it has room for more work),
/// shared with the watchdog. A loop busy with what it took is not waiting.
#[derive(Debug)]
pub struct Liveness {
    base: Instant,
    /// Milliseconds after `base` plus one since the loop waits; 0 while it is busy.
    waiting_since: AtomicU64,
}

impl Liveness {
    fn new() -> Arc<Self> {
        Arc::new(Self { base: Instant::now(), waiting_since: AtomicU64::new(0) })
    }

    fn set_waiting(&self, waiting: bool) {
        let v = if waiting {
            u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1).saturating_add(1)
        } else {
            0
        };
        self.waiting_since.store(v, Ordering::Release);
    }

    /// When the loop started waiting for a delivery, or None while it is busy.
    pub fn waiting_since(&self) -> Option<Instant> {
        match self.waiting_since.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.base + Duration::from_millis(ms - 1)),
        }
    }
}

/// A consumer (or several on one channel, merged) with its channel and queue names.
pub struct Subscription {
    deliveries: Deliveries,
    channel: Channel,
    queues: Vec<String>,
    timeout: Duration,
    recovery: Duration,
    liveness: Arc<Liveness>,
    /// An error being recovered from (or that [`Self::ready`] came upon), kept until
    /// recovery ends so that a dropped [`Self::next`] does not lose it.
    pending: Option<lapin::Error>,
    /// When the wait for recovery from `pending` began.
    recovering_since: Option<Instant>,
}

/// Marks a consumer loop as waiting for as long as it lives (a dropped wait ends it too).
struct Waiting<'a>(&'a Liveness);

impl<'a> Waiting<'a> {
    fn start(l: &'a Liveness) -> Self {
        l.set_waiting(true);
        Self(l)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set_waiting(false);
    }
}

impl Subscription {
    /// Wraps the consumers of `queues`, all on `channel`. A recovery that has not finished
    /// after `recovery` is an error; `timeout` bounds [`Self::close`].
    pub fn new(
        deliveries: Deliveries,
        channel: Channel,
        queues: Vec<String>,
        timeout: Duration,
        recovery: Duration,
    ) -> Self {
        // Fused: a stream that ended keeps answering None.
        let deliveries: Deliveries = Box::pin(deliveries.fuse());
        Self {
            deliveries,
            channel,
            queues,
            timeout,
            recovery,
            liveness: Liveness::new(),
            pending: None,
            recovering_since: None,
        }
    }

    /// Sets `prefetch` on `channel` and opens a consumer of `queue` tagged `tag` there.
    pub async fn open(
        channel: Channel,
        queue: &str,
        tag: &str,
        prefetch: u16,
        timeout: Duration,
        recovery: Duration,
    ) -> Result<Self, AmqpError> {
        timed("basic.qos", timeout, channel.basic_qos(prefetch, BasicQosOptions::default())).await?;
        let consumer = timed(
            "basic.consume",
            timeout,
            channel.basic_consume(queue.into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default()),
        )
        .await?;
        Ok(Self::new(Box::pin(consumer), channel, vec![queue.to_owned()], timeout, recovery))
    }

    /// The channel the consumers live on.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The queues consumed.
    pub fn queues(&self) -> &[String] {
        &self.queues
    }

    /// The waiting state the watchdog reads.
    pub fn liveness(&self) -> Arc<Liveness> {
        self.liveness.clone()
    }

    /// The next delivery; None once `cancel` fires. A consumer error waits for lapin's
    /// recovery (at most the recovery timeout); a consumer the broker cancelled, or a
    /// recovery that failed or did not finish, is an error for the caller to stop on.
    /// Cancel-safe: dropped while it waits for recovery, the next call goes on waiting.
    pub async fn next(&mut self, cancel: &CancellationToken) -> Result<Option<Delivery>, AmqpError> {
        loop {
            let next = if let Some(e) = self.pending.clone() {
                Some(Some(Err(e)))
            } else {
                let _waiting = Waiting::start(&self.liveness);
                tokio::select! {
                    _ = cancel.cancelled() => None,
                    d = self.deliveries.next() => Some(d),
                }
            };
            match next {
                None => return Ok(None),
                Some(Some(Ok(d))) => return Ok(Some(d)),
                Some(Some(Err(e))) => {
                    if !self.recover(e, cancel).await? {
                        return Ok(None);
                    }
                }
                Some(None) if cancel.is_cancelled() => return Ok(None),
                Some(None) => return Err(AmqpError::ConsumerCancelled { queue: self.queues.join(", ") }),
            }
        }
    }

    /// Waits for lapin's recovery from `e`, within what is left of the recovery timeout:
    /// true once recovered, false if `cancel` fired first.
    async fn recover(&mut self, e: lapin::Error, cancel: &CancellationToken) -> Result<bool, AmqpError> {
        let queue = self.queues.join(", ");
        if self.recovering_since.is_none() {
            warn!(%queue, error = %e, "consumer error; waiting for the broker connection to recover");
        }
        self.pending = Some(e.clone());
        let since = *self.recovering_since.get_or_insert_with(Instant::now);
        let left = self.recovery.saturating_sub(since.elapsed());
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return Ok(false),
            o = tokio::time::timeout(left, self.channel.wait_for_recovery(e)) => o,
        };
        (self.pending, self.recovering_since) = (None, None);
        match outcome {
            Ok(Ok(())) => {
                info!(%queue, "consumer recovered");
                Ok(true)
            }
            Ok(Err(cause)) => Err(AmqpError::Op { op: "recovery", cause }),
            Err(_) => Err(AmqpError::Stalled {
                queue,
                reason: "lapin's recovery did not finish".to_owned(),
                after: self.recovery,
            }),
        }
    }

    /// A delivery that is already here, without waiting (to fill a batch).
    pub fn ready(&mut self) -> Option<Delivery> {
        if self.pending.is_some() {
            return None;
        }
        match self.deliveries.next().now_or_never() {
            Some(Some(Ok(d))) => Some(d),
            Some(Some(Err(e))) => {
                self.pending = Some(e);
                None
            }
            _ => None,
        }
    }

    /// Closes the channel: what the consumers hold unacked goes back to the queues.
    pub async fn close(self, reason: &str) {
        let _ = timed("channel.close", self.timeout, self.channel.close(200, reason.into())).await;
    }
}
