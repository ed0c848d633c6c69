//! `rotations`: the history, one row per job (the job id is the idempotency key).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum RotationStatus {
    /// Published, not yet answered.
    #[sea_orm(string_value = "queued")]
    Queued,
    /// The new certificate is installed and validated.
    #[sea_orm(string_value = "rotated")]
    Rotated,
    /// Failed after install; the previous certificate was restored.
    #[sea_orm(string_value = "rolled_back")]
    RolledBack,
    /// Dead-lettered.
    #[sea_orm(string_value = "dead")]
    Dead,
    /// Discarded from the dead letters by an operator.
    #[sea_orm(string_value = "discarded")]
    Discarded,
}

impl RotationStatus {
    /// The database and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Rotated => "rotated",
            Self::RolledBack => "rolled_back",
            Self::Dead => "dead",
            Self::Discarded => "discarded",
        }
    }
}

/// One job's history row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "rotations")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The job (idempotency key).
    #[sea_orm(unique)]
    pub job_id: Uuid,
    /// The asset.
    pub asset_id: i64,
    /// Latest attempt seen.
    pub attempt: i32,
    /// Driver that ran it.
    pub driver: String,
    /// Status.
    pub status: RotationStatus,
    /// Error class (`certfleet_proto::ErrorClass` spelling), if it failed.
    pub error_class: Option<String>,
    /// Error message, if it failed.
    pub error_message: Option<String>,
    /// Worker that reported it.
    pub worker: Option<String>,
    /// When it was published.
    pub queued_at: DateTimeUtc,
    /// When it reached its status.
    pub finished_at: Option<DateTimeUtc>,
    /// When the broker confirmed it (unset: recorded but not yet confirmed).
    pub published_at: Option<DateTimeUtc>,
    /// The exported trace that published it (32 hex digits), when spans are exported and
    /// that trace was sampled.
    pub trace_id: Option<String>,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
