//! `[metrics]`: the Prometheus `/metrics` endpoint of each process, and how the scheduler
//! computes the fleet gauges from the inventory.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// Settings of the `/metrics` endpoints. Every process has its own address, and each is
/// off (unset) by default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `certfleet-scheduler` (and `certfleet up`) serves `/metrics`, for example
    /// `127.0.0.1:9464`. Unset: no endpoint.
    pub scheduler_listen: Option<SocketAddr>,
    /// Where `certfleet-worker` serves `/metrics`, for example `127.0.0.1:9465`. Two
    /// workers on one host need two addresses (`CERTFLEET_METRICS__WORKER_LISTEN`).
    pub worker_listen: Option<SocketAddr>,
    /// Where `certfleet-api` serves `/metrics`, for example `127.0.0.1:9466` (a port of its
    /// own, apart from the API's, so scraping needs no token).
    pub api_listen: Option<SocketAddr>,
    /// Where `certfleet-notifier` serves `/metrics`, for example `127.0.0.1:9467`.
    pub notifier_listen: Option<SocketAddr>,
    /// Scheduler: how often the fleet gauges (assets by state, expiring certificates,
    /// per-asset expiry, dead letters, queues) are computed again. Each refresh is a few
    /// aggregate queries and one queue read.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Scheduler: the largest fleet for which `certfleet_certificate_expiration_timestamp_seconds`
    /// is exported per asset (with `per_asset = "auto"`). Past it the series are dropped,
    /// so a large fleet is not a cardinality bomb; the aggregate gauges stay.
    pub per_asset_limit: u64,
    /// Scheduler: whether the per-asset expiry series are exported.
    pub per_asset: PerAsset,
}

/// Whether per-asset expiry series are exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PerAsset {
    /// While the fleet has at most `per_asset_limit` assets.
    #[default]
    Auto,
    /// Always, whatever the fleet's size (opt-in for large fleets).
    Always,
    /// Never.
    Never,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            scheduler_listen: None,
            worker_listen: None,
            api_listen: None,
            notifier_listen: None,
            refresh_interval: Duration::from_secs(60),
            per_asset_limit: 10_000,
            per_asset: PerAsset::Auto,
        }
    }
}
