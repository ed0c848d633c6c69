//! certfleet shared layer: configuration, the inventory database, the AMQP topology and
//! telemetry, used by the scheduler, the worker and the CLI alike.
#![warn(missing_docs)]

pub mod amqp;
pub mod backoff;
pub mod config;
pub mod db;
pub mod http;
pub mod messages;
pub mod metrics;
pub mod redact;
pub mod shutdown;
pub mod telemetry;

pub use config::{Config, ConfigError};

/// What every binary does first: load the config (`path`, or `certfleet.toml` if present,
/// then the environment), start logging and span export (as `process`), and report
/// unknown `CERTFLEET_*` variables. Keep the [`telemetry::Telemetry`] until the process
/// ends: dropping it flushes the spans.
pub fn startup(path: Option<&std::path::Path>, process: &str) -> Result<(Config, telemetry::Telemetry), ConfigError> {
    let loaded = Config::load(path)?;
    let telemetry = telemetry::init(loaded.config.log_format, &loaded.config.telemetry, process)
        .map_err(|reason| ConfigError::Value { key: "telemetry", reason })?;
    for name in &loaded.unknown_env {
        tracing::warn!(%name, "ignoring unknown CERTFLEET_ environment variable");
    }
    if telemetry.exporting() {
        tracing::info!(service = process, "exporting spans over OTLP");
    }
    Ok((loaded.config, telemetry))
}
