//! `workers`: the last heartbeat of every worker, keyed by its name.

use sea_orm::entity::prelude::*;

/// One worker.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workers")]
pub struct Model {
    /// The worker's name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub worker_id: String,
    /// JSON array of the drivers it serves.
    pub drivers: Json,
    /// Jobs it runs at once.
    pub concurrency: i32,
    /// Jobs running at its last heartbeat.
    pub in_flight: i32,
    /// Its heartbeat period, in milliseconds.
    pub interval_ms: i64,
    /// When it started.
    pub started_at: DateTimeUtc,
    /// When its last heartbeat was sent.
    pub last_seen: DateTimeUtc,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
