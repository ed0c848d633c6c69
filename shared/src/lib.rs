//! certfleet shared layer: configuration, the inventory database, the AMQP topology and
//! telemetry, used by the scheduler, the worker and the CLI alike.
#![warn(missing_docs)]

pub mod amqp;
pub mod backoff;
pub mod config;
pub mod db;
pub mod redact;
pub mod shutdown;
pub mod telemetry;

pub use config::{Config, ConfigError};
