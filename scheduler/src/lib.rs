//! certfleet scheduler: scans the inventory in pages, decides what is due with a chain of
//! pure policies, routes each due asset to a driver, publishes jobs with confirms, and
//! records results and dead letters back into the inventory.

pub mod dead;
pub mod gauges;
pub mod heartbeats;
pub mod leader;
pub mod manual;
pub mod notify;
pub mod policy;
pub mod publish;
pub mod recompute;
pub mod recover;
pub mod results;
pub mod routes;
pub mod runtime;
pub mod scan;

pub use runtime::{RunOptions, run, run_with};

/// Errors of the scheduler library.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Database failure.
    #[error(transparent)]
    Db(#[from] certfleet_shared::db::DbError),
    /// Broker failure.
    #[error(transparent)]
    Amqp(#[from] certfleet_shared::amqp::AmqpError),
    /// A scan stage or a consumer stopped unexpectedly.
    #[error("{0}")]
    Stage(String),
    /// The routing table is unusable.
    #[error(transparent)]
    Routes(#[from] routes::RoutesError),
    /// The configuration cannot be used (for example a notification channel's secret).
    #[error(transparent)]
    Config(#[from] certfleet_shared::ConfigError),
}
