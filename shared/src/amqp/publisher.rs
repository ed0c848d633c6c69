//! Publishing with publisher confirms: a message counts as sent only once the broker
//! acknowledged it. A nack or a returned mandatory message is an error, never a silent loss.

use super::{AmqpError, timed};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// A channel in confirm mode.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    timeout: Duration,
    /// Set when a wait for lapin's recovery ran out and the channel is still not back:
    /// later sends fail at once instead of each waiting the recovery time again (a batch
    /// of thousands of jobs would otherwise take hours to fail, and hold up whatever
    /// waits for it, such as the scheduler noticing that its broker session is gone).
    gave_up: Arc<AtomicBool>,
}

/// One message to publish.
#[derive(Clone)]
pub struct Outgoing<'a> {
    /// Target exchange ("" for the default exchange).
    pub exchange: &'a str,
    /// Routing key.
    pub routing_key: &'a str,
    /// Body.
    pub body: &'a [u8],
    /// Properties (headers, ids, persistence).
    pub properties: BasicProperties,
}

/// A published message whose confirm has not been awaited yet (for pipelining).
pub struct PendingConfirm {
    confirm: PublisherConfirm,
    exchange: String,
    routing_key: String,
    timeout: Duration,
    /// The confirm is due within the timeout of the publish, not of the wait: confirms of
    /// a pipelined batch awaited one after another share about one deadline.
    due: Instant,
}

impl PendingConfirm {
    /// Waits for the broker's verdict (at most until the timeout after the publish).
    pub async fn wait(self) -> Result<(), AmqpError> {
        let confirmation = match tokio::time::timeout_at(self.due, self.confirm).await {
            Ok(Ok(c)) => c,
            Ok(Err(cause)) => return Err(AmqpError::Op { op: "publish confirm", cause }),
            Err(_) => return Err(AmqpError::Timeout { op: "publish confirm", timeout: self.timeout }),
        };
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(AmqpError::Returned {
                exchange: self.exchange,
                routing_key: self.routing_key,
                reply: returned.reply_text.to_string(),
            }),
            Confirmation::Nack(_) => Err(AmqpError::Nack { exchange: self.exchange, routing_key: self.routing_key }),
        }
    }
}

impl Publisher {
    /// Opens a channel on `conn` and puts it in confirm mode.
    pub async fn open(conn: &Connection, timeout: Duration) -> Result<Self, AmqpError> {
        let channel = timed("channel.open", timeout, conn.create_channel()).await?;
        timed("confirm.select", timeout, channel.confirm_select(ConfirmSelectOptions::default())).await?;
        Ok(Self { channel, timeout, gave_up: Arc::default() })
    }

    /// The underlying channel (for declaring topology).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes with the mandatory flag and returns the confirm to await later.
    pub async fn send(&self, msg: Outgoing<'_>) -> Result<PendingConfirm, AmqpError> {
        let publish = || {
            self.channel.basic_publish(
                msg.exchange.into(),
                msg.routing_key.into(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                msg.body,
                msg.properties.clone(),
            )
        };
        let confirm = match timed("basic.publish", self.timeout, publish()).await {
            Ok(c) => c,
            // After a broker restart, wait for lapin's recovery and try once more; once a
            // wait ran out, fail at once until the channel is back.
            Err(AmqpError::Op { cause: source, .. }) => {
                let recovery = self.timeout * 3;
                if self.gave_up.load(Ordering::Relaxed) && !self.channel.status().connected() {
                    return Err(AmqpError::Timeout { op: "recovery", timeout: recovery });
                }
                if let Err(e) = timed("recovery", recovery, self.channel.wait_for_recovery(source)).await {
                    self.gave_up.store(!self.channel.status().connected(), Ordering::Relaxed);
                    return Err(e);
                }
                self.gave_up.store(false, Ordering::Relaxed);
                timed("basic.publish", self.timeout, publish()).await?
            }
            Err(e) => return Err(e),
        };
        Ok(PendingConfirm {
            confirm,
            exchange: msg.exchange.to_owned(),
            routing_key: msg.routing_key.to_owned(),
            timeout: self.timeout,
            due: Instant::now() + self.timeout,
        })
    }

    /// Publishes and waits for the confirm.
    pub async fn publish(&self, msg: Outgoing<'_>) -> Result<(), AmqpError> {
        self.send(msg).await?.wait().await
    }
}
