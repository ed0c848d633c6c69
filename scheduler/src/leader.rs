//! The leader lease keeper: one task per scheduler that takes the lease when it is free and
//! renews it while held, publishing the current lease (or `None`) to the scan loop.

use certfleet_shared::db::leader::{self, Lease};
use chrono::Utc;
use sea_orm::DatabaseConnection;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A process-unique holder id: host, pid and a random suffix.
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{}-{}-{suffix}", if host.is_empty() { "scheduler" } else { host }, std::process::id())
}

/// One attempt to take or keep the lease; errors keep the lease only while it is unexpired.
pub async fn step(db: &DatabaseConnection, holder: &str, current: Option<Lease>, ttl: Duration) -> Option<Lease> {
    let now = Utc::now();
    match leader::acquire_or_renew(db, holder, current.as_ref(), now, ttl).await {
        Ok(next) => {
            match (&current, &next) {
                (None, Some(l)) => info!(epoch = l.epoch, "took the scheduler lease: this scheduler scans"),
                (Some(_), None) => warn!("lost the scheduler lease: standing by"),
                (Some(a), Some(b)) if a.epoch != b.epoch => info!(epoch = b.epoch, "took the scheduler lease again"),
                _ => {}
            }
            next
        }
        Err(e) => {
            warn!(error = %e, "could not renew the scheduler lease");
            current.filter(|l| l.expires_at > Utc::now())
        }
    }
}

/// Keeps the lease until `cancel`, then gives it up. The current lease is on `tx`, whose
/// receivers are woken only when leadership changes (not on every renewal).
pub async fn keep(
    db: DatabaseConnection,
    holder: String,
    ttl: Duration,
    renew: Duration,
    tx: watch::Sender<Option<Lease>>,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + renew, renew);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut current: Option<Lease> = tx.borrow().clone();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        current = step(&db, &holder, current, ttl).await;
        tx.send_if_modified(|seen| {
            let changed = seen.as_ref().map(|l| l.epoch) != current.as_ref().map(|l| l.epoch);
            seen.clone_from(&current);
            changed
        });
    }
    tx.send_replace(None);
    if let Some(lease) = current
        && let Err(e) = leader::release(&db, &lease).await
    {
        warn!(error = %e, "could not give up the scheduler lease; it expires by itself");
    }
}
