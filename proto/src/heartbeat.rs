//! The worker heartbeat: what a worker tells the fleet about itself every
//! `worker.heartbeat_interval`, so that dashboards can show who is alive.

use crate::Driver;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One heartbeat of one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerHeartbeat {
    /// The worker's name (`--name`; also in its results and broker connection).
    pub worker: String,
    /// The drivers it serves.
    pub drivers: Vec<Driver>,
    /// Jobs it runs at once.
    pub concurrency: u32,
    /// Jobs running now.
    pub in_flight: u32,
    /// The period of its heartbeats, in milliseconds: silent for 3 of them, it is gone.
    pub interval_ms: u64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When this heartbeat was sent.
    pub sent_at: DateTime<Utc>,
}
