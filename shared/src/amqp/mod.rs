//! AMQP plumbing: connecting with automatic recovery and fail-over across cluster nodes, the topology every process declares,
//! a publisher that waits for the broker's confirm, and the message headers.

mod connect;
pub mod headers;
pub mod management;
mod publisher;
pub mod settle;
pub mod stats;
mod subscription;
pub mod topology;
pub mod watchdog;

pub use connect::connect;
pub use publisher::{Outgoing, PendingConfirm, Publisher};
pub use subscription::{Deliveries, Liveness, Subscription};

use std::time::Duration;

/// Errors of the AMQP layer.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The broker could not be reached. The URL has its password hidden.
    #[error("cannot connect to RabbitMQ at {url}: {cause}")]
    Connect {
        /// Redacted URL.
        url: String,
        /// lapin's error (in the message, not a `source()`, so a chain never repeats it).
        cause: lapin::Error,
    },
    /// The broker's address refused or failed the TCP connection.
    #[error("cannot connect to RabbitMQ at {url}: {reason}")]
    Unreachable {
        /// Redacted URL.
        url: String,
        /// The socket error.
        reason: String,
    },
    /// The URL does not parse.
    #[error("invalid RabbitMQ URL {url}")]
    BadUrl {
        /// Redacted URL.
        url: String,
    },
    /// Connecting took longer than the timeout.
    #[error("cannot connect to RabbitMQ at {url}: timed out after {timeout:?}")]
    ConnectTimeout {
        /// Redacted URL.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// A channel operation failed.
    #[error("AMQP {op} failed: {cause}")]
    Op {
        /// What was attempted.
        op: &'static str,
        /// lapin's error (in the message, not a `source()`).
        cause: lapin::Error,
    },
    /// The broker did not answer in time.
    #[error("AMQP {op} timed out after {timeout:?}")]
    Timeout {
        /// What was attempted.
        op: &'static str,
        /// The timeout.
        timeout: Duration,
    },
    /// The broker refused to take a message (for example a full queue with reject-publish).
    #[error("broker refused (nack) a message for exchange {exchange:?} routing key {routing_key:?}")]
    Nack {
        /// Target exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
    },
    /// A consumer's broker session stayed unusable for the recovery timeout (see
    /// [`watchdog`]); the process stops so that its supervisor starts it afresh.
    #[error(
        "the broker connection did not recover within {after:?} ({queue}: {reason}); stopping so that the \
         service manager starts this process again"
    )]
    Stalled {
        /// The queue (or queues) whose consumer is stuck.
        queue: String,
        /// What the last probe found.
        reason: String,
        /// `broker_recovery_timeout`.
        after: Duration,
    },
    /// The broker ended a consumer (its queue was deleted, or its node left) and recovery
    /// did not bring it back.
    #[error("the broker cancelled the consumer of {queue}")]
    ConsumerCancelled {
        /// The queue (or queues).
        queue: String,
    },
    /// A mandatory message matched no queue and came back.
    #[error("message for exchange {exchange:?} routing key {routing_key:?} was returned: {reply}")]
    Returned {
        /// Target exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// The broker's reply text.
        reply: String,
    },
}

/// Runs one broker round trip under `timeout`, naming the operation in the error.
pub async fn timed<T>(
    op: &'static str,
    timeout: Duration,
    fut: impl std::future::Future<Output = lapin::Result<T>>,
) -> Result<T, AmqpError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(cause)) => Err(AmqpError::Op { op, cause }),
        Err(_) => Err(AmqpError::Timeout { op, timeout }),
    }
}
