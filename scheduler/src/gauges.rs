//! The fleet gauges: while it holds the lease, the scheduler computes assets by state,
//! expiring certificates, per-asset expiry (up to `metrics.per_asset_limit`), waiting dead
//! letters and the queues' numbers every `metrics.refresh_interval`, with aggregate queries
//! (never a scan of the inventory per scrape). Only the leader exports them, so two
//! schedulers never double the fleet's numbers.

use certfleet_shared::Config;
use certfleet_shared::amqp::management::Management;
use certfleet_shared::amqp::stats::queue_stats_with;
use certfleet_shared::config::PerAsset;
use certfleet_shared::db::fleet_gauges as q;
use certfleet_shared::db::leader::Lease;
use certfleet_shared::metrics::{self, Metric, Process, gauge};
use chrono::{Duration as Days, Utc};
use lapin::Connection;
use sea_orm::DatabaseConnection;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The `within` windows of `certfleet_certificates_expiring`, in days (`0d`: expired).
pub const WINDOWS: [(i64, &str); 4] = [(0, "0d"), (2, "2d"), (15, "15d"), (30, "30d")];

/// A series' labels, remembered so a group that empties is set to 0 instead of lingering.
type Labels = Vec<(&'static str, String)>;

/// What the refresher needs.
pub struct Refresher {
    /// The inventory.
    pub db: DatabaseConnection,
    /// The broker connection (queue numbers).
    pub conn: Arc<Connection>,
    /// The config (metrics settings, management API, timeouts).
    pub config: Config,
    /// The lease; `None` while another scheduler leads.
    pub lease: watch::Receiver<Option<Lease>>,
}

impl Refresher {
    /// Refreshes every `metrics.refresh_interval` until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        let management = self.config.amqp_management_url.as_deref().and_then(|url| {
            Management::new(url, self.config.amqp_url.first(), self.config.connect_timeout)
                .map_err(|e| warn!(error = %e, "queue gauges without unacked counts"))
                .ok()
        });
        let mut ticker = tokio::time::interval(self.config.metrics.refresh_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous: HashSet<(Metric, Labels)> = HashSet::new();
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticker.tick() => {}
                // Just took over the lease: export now rather than at the next tick.
                Ok(()) = self.lease.changed() => {}
            }
            metrics::build_info(Process::Scheduler);
            if self.lease.borrow_and_update().is_none() {
                continue;
            }
            let mut now_set = HashSet::new();
            if let Err(e) = self.inventory(&mut now_set).await {
                warn!(error = %e, "fleet gauges not refreshed; retrying at the next interval");
                continue;
            }
            self.queues(management.as_ref(), &mut now_set).await;
            // A group that emptied reads 0 (for a while: unset gauges expire after 3 intervals).
            for (metric, labels) in previous.difference(&now_set) {
                gauge!(metric.name(), labels).set(0.0);
            }
            previous = now_set;
        }
    }

    async fn inventory(&self, set: &mut HashSet<(Metric, Labels)>) -> Result<(), certfleet_shared::db::DbError> {
        let db = &self.db;
        let now = Utc::now();
        for s in q::assets_by_state(db).await? {
            let labels = vec![
                ("state", s.state),
                ("certificate_authority", s.certificate_authority),
                ("data_center", s.data_center),
            ];
            put(set, Metric::Assets, labels, s.count as f64);
        }
        for (days, within) in WINDOWS {
            for g in q::expiring_by(db, now + Days::days(days)).await? {
                let labels = vec![
                    ("within", within.to_owned()),
                    ("certificate_authority", g.certificate_authority),
                    ("data_center", g.data_center),
                ];
                put(set, Metric::CertificatesExpiring, labels, g.count as f64);
            }
        }
        for (class, n) in q::pending_dead_letters(db).await? {
            put(set, Metric::DeadLetters, vec![("class", class)], n as f64);
        }
        let m = &self.config.metrics;
        let per_asset = match m.per_asset {
            PerAsset::Never => false,
            PerAsset::Always => true,
            PerAsset::Auto => {
                let n = q::with_expiry(db).await?;
                if n > m.per_asset_limit {
                    debug!(
                        assets = n,
                        limit = m.per_asset_limit,
                        "per-asset expiry series off: the fleet is past the limit"
                    );
                }
                n <= m.per_asset_limit
            }
        };
        if per_asset {
            // Not remembered: a deleted asset's series expires (after 3 intervals) rather
            // than reading 0, which would look like a certificate expired in 1970.
            for a in q::per_asset(db).await? {
                gauge!(
                    Metric::CertificateExpiration.name(),
                    "system_name" => a.system_name,
                    "certificate_authority" => a.certificate_authority,
                    "data_center" => a.data_center
                )
                .set(a.expires_at.timestamp() as f64);
            }
        }
        Ok(())
    }

    async fn queues(&self, management: Option<&Management>, set: &mut HashSet<(Metric, Labels)>) {
        let stats = match queue_stats_with(&self.conn, management, self.config.connect_timeout).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "queue gauges not refreshed");
                return;
            }
        };
        for s in stats {
            put(
                set,
                Metric::QueueMessages,
                vec![("queue", s.queue.clone()), ("state", "ready".into())],
                s.messages.into(),
            );
            if let Some(unacked) = s.unacked {
                let labels = vec![("queue", s.queue.clone()), ("state", "unacked".into())];
                put(set, Metric::QueueMessages, labels, unacked.into());
            }
            put(set, Metric::QueueConsumers, vec![("queue", s.queue)], s.consumers.into());
        }
    }
}

fn put(set: &mut HashSet<(Metric, Labels)>, metric: Metric, labels: Labels, value: f64) {
    gauge!(metric.name(), &labels).set(value);
    set.insert((metric, labels));
}
