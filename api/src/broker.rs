//! The API's broker handle: one connection and confirm-mode publisher, opened on first
//! use and reopened after a failure, shared by the handlers that publish.

use crate::error::ApiError;
use certfleet_proto::Driver;
use certfleet_shared::amqp::management::Management;
use certfleet_shared::amqp::{self, Publisher, topology};
use certfleet_shared::config::AmqpUrls;
use std::time::Duration;
use tokio::sync::Mutex;

struct Open {
    conn: lapin::Connection,
    publisher: Publisher,
}

/// Lazily connected broker.
pub struct Broker {
    url: AmqpUrls,
    timeout: Duration,
    open: Mutex<Option<Open>>,
    management: Option<Management>,
}

impl Broker {
    /// A handle that connects on first use; `management` adds unacked counts and rates to
    /// the queue numbers.
    pub fn new(url: AmqpUrls, management: Option<Management>, timeout: Duration) -> Self {
        Self { url, timeout, open: Mutex::new(None), management }
    }

    /// The management API client, when configured.
    pub fn management(&self) -> Option<&Management> {
        self.management.as_ref()
    }

    /// Runs `f` with a connected publisher (serialised: one publish at a time).
    pub async fn with_publisher<T, F, Fut>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(Publisher) -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let mut guard = self.open.lock().await;
        if guard.as_ref().is_none_or(|o| !o.conn.status().connected()) {
            *guard = Some(self.connect().await?);
        }
        let publisher = match guard.as_ref() {
            Some(o) => o.publisher.clone(),
            None => return Err(ApiError::Unavailable("the broker is unavailable".into())),
        };
        f(publisher).await
    }

    /// A fresh short-lived connection (queue stats, readiness).
    pub async fn connection(&self) -> Result<lapin::Connection, ApiError> {
        amqp::connect(&self.url, "certfleet-api", self.timeout).await.map_err(|e| {
            tracing::warn!(error = %e, "broker unavailable");
            ApiError::Unavailable("the broker is unavailable".into())
        })
    }

    async fn connect(&self) -> Result<Open, ApiError> {
        let conn = self.connection().await?;
        let unavailable = |e: amqp::AmqpError| {
            tracing::warn!(error = %e, "broker unavailable");
            ApiError::Unavailable("the broker is unavailable".into())
        };
        let publisher = Publisher::open(&conn, self.timeout).await.map_err(unavailable)?;
        topology::declare_on(&conn, Driver::ALL, self.timeout).await.map_err(unavailable)?;
        Ok(Open { conn, publisher })
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
