//! The broker watchdog. lapin's automatic recovery is trusted for a bounded time only: it
//! can leave a consumer silent after a broker restart (amqp-rs/lapin#450; found here by
//! `tests/chaos.rs`). Every few seconds the watchdog asks the broker about each consumed
//! queue, on the consumer's own channel (a passive `queue.declare`). A consumer is unhealthy
//! while
//! - that question fails or is not answered in time: its channel or connection is gone and
//!   has not come back;
//! - the broker lists no consumer on the queue: ours was lost;
//! - it has waited for work since the last probe while ready messages sat in the queue and
//!   did not go down: the broker's deliveries do not reach it.
//!
//! Unhealthy without a break for `broker_recovery_timeout`, [`watch`] returns why, and the
//! process stops with that error so that its supervisor starts it again on a fresh
//! connection. Nothing is lost: unacked messages go back to their queues.

use super::subscription::{Liveness, Subscription};
use super::{AmqpError, timed};
use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

/// One consumed queue, the channel its consumer lives on and the consumer loop's state.
#[derive(Clone)]
pub struct Watched {
    channel: Channel,
    queue: String,
    liveness: Arc<Liveness>,
}

/// The queues of a subscription, to watch.
pub fn watched(sub: &Subscription) -> Vec<Watched> {
    sub.queues()
        .iter()
        .map(|q| Watched { channel: sub.channel().clone(), queue: q.clone(), liveness: sub.liveness() })
        .collect()
}

/// Time between two probes for a given recovery timeout: six probes fit in it, and a probe
/// runs every 1 to 10 s.
pub fn probe_interval(recovery: Duration) -> Duration {
    (recovery / 6).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// What the last probes of one queue found.
struct State {
    bad_since: Option<Instant>,
    last_probe: Instant,
    last_ready: Option<u32>,
}

/// Probes `watched` until `cancel` fires (None) or one of them has been unhealthy for
/// `recovery` without a break (the error to stop on). Each probe waits at most `timeout`.
pub async fn watch(
    watched: Vec<Watched>,
    recovery: Duration,
    timeout: Duration,
    cancel: CancellationToken,
) -> Option<AmqpError> {
    let start = Instant::now();
    let mut states: Vec<State> =
        watched.iter().map(|_| State { bad_since: None, last_probe: start, last_ready: None }).collect();
    let mut ticker = tokio::time::interval(probe_interval(recovery));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = ticker.tick() => {}
        }
        for (w, st) in watched.iter().zip(&mut states) {
            let verdict = probe(w, st, timeout).await;
            let now = Instant::now();
            st.last_probe = now;
            match verdict {
                Ok(()) => st.bad_since = None,
                Err(reason) => {
                    let since = *st.bad_since.get_or_insert(now);
                    debug!(queue = %w.queue, %reason, unhealthy_for = ?now - since, "broker watchdog");
                    if now - since >= recovery {
                        return Some(AmqpError::Stalled { queue: w.queue.clone(), reason, after: recovery });
                    }
                }
            }
        }
    }
}

/// Runs [`watch`] in a task that cancels `stop` when it finds a stall, so that the process
/// winds down (settling what is in flight) and then reports the returned error. The task
/// ends with None once `stop` is cancelled for another reason.
pub fn spawn(
    watched: Vec<Watched>,
    recovery: Duration,
    timeout: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Option<AmqpError>> {
    tokio::spawn(async move {
        let stalled = watch(watched, recovery, timeout, stop.clone()).await;
        if let Some(e) = &stalled {
            error!(error = %e, "broker watchdog: stopping");
            stop.cancel();
        }
        stalled
    })
}

/// One probe of one queue: Ok when healthy, else why not.
async fn probe(w: &Watched, st: &mut State, timeout: Duration) -> Result<(), String> {
    let declare = w.channel.queue_declare(
        w.queue.as_str().into(),
        QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
        FieldTable::default(),
    );
    let q = match timed("queue.declare", timeout, declare).await {
        Ok(q) => q,
        Err(e) => {
            st.last_ready = None;
            return Err(format!("the broker does not answer on the consumer's channel ({e})"));
        }
    };
    if q.consumer_count() == 0 {
        return Err("the broker lists no consumer on the queue".to_owned());
    }
    let ready = q.message_count();
    let waited_since_last_probe = w.liveness.waiting_since().is_some_and(|t| t <= st.last_probe);
    let stuck = ready > 0 && st.last_ready.is_some_and(|before| ready >= before);
    st.last_ready = Some(ready);
    if waited_since_last_probe && stuck {
        return Err(format!("{ready} messages are ready but none reaches the consumer, which waits for work"));
    }
    Ok(())
}
