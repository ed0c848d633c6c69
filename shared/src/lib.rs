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
/// then the environment), start logging, and report unknown `CERTFLEET_*` variables.
pub fn startup(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
    let loaded = Config::load(path)?;
    telemetry::init(loaded.config.log_format);
    for name in &loaded.unknown_env {
        tracing::warn!(%name, "ignoring unknown CERTFLEET_ environment variable");
    }
    Ok(loaded.config)
}
