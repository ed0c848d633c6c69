//! Prometheus metrics: installs the `metrics` recorder of `metrics-exporter-prometheus`
//! and serves its text exposition at `/metrics` on the process's `metrics.*_listen`
//! address. The names are the closed set in [`names`]; the values are recorded with the
//! `metrics` macros where things happen.

pub mod names;

/// The `metrics` macros, so the other crates record without depending on it themselves.
pub use ::metrics::{counter, gauge, histogram};
pub use names::{Kind, Metric, RotationOutcome, Step};

use crate::config::MetricsConfig;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Bucket bounds of every duration histogram, in seconds: from a fast database round trip
/// to a slow ACME order.
pub const DURATION_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// How often histogram buckets are drained between scrapes (bounds the recorder's memory).
const UPKEEP: Duration = Duration::from_secs(5);

/// The certfleet processes that serve metrics, each on its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// `certfleet-scheduler` (and `certfleet up`, which runs everything in one process).
    Scheduler,
    /// `certfleet-worker`.
    Worker,
    /// `certfleet-api`.
    Api,
    /// `certfleet-notifier`.
    Notifier,
}

impl Process {
    /// The `process` label of `certfleet_build_info`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Process::Scheduler => "scheduler",
            Process::Worker => "worker",
            Process::Api => "api",
            Process::Notifier => "notifier",
        }
    }

    /// Its config key under `[metrics]`.
    pub const fn key(self) -> &'static str {
        match self {
            Process::Scheduler => "metrics.scheduler_listen",
            Process::Worker => "metrics.worker_listen",
            Process::Api => "metrics.api_listen",
            Process::Notifier => "metrics.notifier_listen",
        }
    }

    /// Its address, if configured.
    pub fn listen(self, config: &MetricsConfig) -> Option<SocketAddr> {
        match self {
            Process::Scheduler => config.scheduler_listen,
            Process::Worker => config.worker_listen,
            Process::Api => config.api_listen,
            Process::Notifier => config.notifier_listen,
        }
    }
}

/// Why the metrics endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Another recorder is installed in this process already.
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
    /// The exporter refused its settings.
    #[error("metrics exporter: {0}")]
    Build(String),
    /// The listen address could not be bound.
    #[error("cannot serve /metrics on {addr} ({key}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The config key that named it.
        key: &'static str,
        /// The socket error.
        source: std::io::Error,
    },
}

/// A running `/metrics` endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// The address bound (port 0 resolved).
    pub addr: SocketAddr,
    /// Renders the current exposition (what a scrape returns).
    pub handle: PrometheusHandle,
}

/// The shortest time a scheduler's gauge stays in the exposition without being set again.
pub const GAUGE_IDLE_FLOOR: std::time::Duration = std::time::Duration::from_secs(120);

/// Installs the recorder and serves `/metrics` for `process` until `cancel`, if its
/// address is configured; otherwise records nothing (the `metrics` macros are no-ops
/// without a recorder) and returns `None`.
///
/// In the scheduler, gauges not set for `3 × metrics.refresh_interval` (and at least
/// [`GAUGE_IDLE_FLOOR`]) are dropped from the exposition: the fleet gauges are set at every
/// refresh, so an asset deleted (or the per-asset series turned off) disappears rather than
/// lingering, while one slow refresh on a loaded host does not make series flicker.
pub async fn serve(
    process: Process,
    config: &MetricsConfig,
    cancel: CancellationToken,
) -> Result<Option<Endpoint>, MetricsError> {
    let Some(addr) = process.listen(config) else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind {
        addr,
        key: process.key(),
        source,
    })?;
    let bound = listener.local_addr().map_err(|source| MetricsError::Bind { addr, key: process.key(), source })?;
    let handle = install(process, config)?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get({
            let handle = handle.clone();
            move || {
                let text = handle.render();
                async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text) }
            }
        }),
    );
    let upkeep = handle.clone();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => upkeep.run_upkeep(),
            }
        }
    });
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { cancel.cancelled().await });
        if let Err(e) = served.await {
            tracing::warn!(error = %e, "the /metrics endpoint stopped");
        }
    });
    tracing::info!(url = %format!("http://{bound}/metrics"), process = process.as_str(), "serving metrics");
    Ok(Some(Endpoint { addr: bound, handle }))
}

/// Installs the global recorder (without serving it), describes every metric and sets
/// `certfleet_build_info`. Used by [`serve`], and by tests and benchmarks that render the
/// exposition themselves.
pub fn install(process: Process, config: &MetricsConfig) -> Result<PrometheusHandle, MetricsError> {
    let mut builder =
        PrometheusBuilder::new().set_buckets(DURATION_BUCKETS).map_err(|e| MetricsError::Build(e.to_string()))?;
    if process == Process::Scheduler {
        let idle = config.refresh_interval.saturating_mul(3).max(GAUGE_IDLE_FLOOR);
        builder = builder.idle_timeout(MetricKindMask::GAUGE, Some(idle));
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|_| MetricsError::AlreadyInstalled)?;
    describe();
    build_info(process);
    Ok(handle)
}

/// Sets `certfleet_build_info` to 1 (again: the scheduler's idle timeout drops gauges not
/// set lately, so its refresher calls this too).
pub fn build_info(process: Process) {
    ::metrics::gauge!(Metric::BuildInfo.name(), "version" => env!("CARGO_PKG_VERSION"), "process" => process.as_str())
        .set(1.0);
}

fn describe() {
    for m in Metric::ALL {
        let (name, help) = (m.name(), m.help());
        match m.kind() {
            Kind::Counter => ::metrics::describe_counter!(name, help),
            Kind::Gauge => ::metrics::describe_gauge!(name, help),
            Kind::Histogram => ::metrics::describe_histogram!(name, ::metrics::Unit::Seconds, help),
        }
    }
}

/// Seconds since `start`, for a histogram.
pub fn seconds_since(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_follow_the_prometheus_conventions_and_are_documented() {
        let doc = include_str!("../../../docs/observability.md");
        let mut seen = HashSet::new();
        for m in Metric::ALL {
            let name = m.name();
            assert!(seen.insert(name), "{name} twice");
            assert!(name.starts_with("certfleet_"), "{name}");
            match m.kind() {
                Kind::Counter => assert!(name.ends_with("_total"), "{name}: counters end in _total"),
                Kind::Histogram => assert!(name.ends_with("_seconds"), "{name}: durations are in seconds"),
                Kind::Gauge => assert!(!name.ends_with("_total"), "{name}: a gauge is no total"),
            }
            assert!(doc.contains(&format!("`{name}`")), "{name} is missing from docs/observability.md");
            for label in m.labels() {
                assert!(!label.is_empty() && label.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{label}");
            }
        }
        assert_eq!(seen.len(), Metric::ALL.len());
    }
}
