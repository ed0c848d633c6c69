//! `dead_letters`: every message that reached `certfleet.dead`, for operators to browse,
//! retry or discard (never by draining the queue).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// What an operator did with a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterStatus {
    /// Waiting for an operator.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Republished.
    #[sea_orm(string_value = "retried")]
    Retried,
    /// Dropped.
    #[sea_orm(string_value = "discarded")]
    Discarded,
}

impl DeadLetterStatus {
    /// The database and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retried => "retried",
            Self::Discarded => "discarded",
        }
    }
}

/// One dead letter.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "dead_letters")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The job id (or, for an undecodable message without one, a generated id).
    #[sea_orm(unique)]
    pub job_id: Uuid,
    /// The asset, when known.
    pub asset_id: Option<i64>,
    /// The asset's name, when known.
    pub system_name: Option<String>,
    /// Driver queue it died on, when known.
    pub driver: Option<String>,
    /// Error class (`certfleet_proto::ErrorClass` spelling).
    pub error_class: String,
    /// Human-readable reason.
    pub reason: String,
    /// Attempts made.
    pub attempts: i32,
    /// Status.
    pub status: DeadLetterStatus,
    /// When it was recorded (first time).
    pub dead_at: DateTimeUtc,
    /// Last operator action.
    pub updated_at: DateTimeUtc,
    /// What died: `notification`, or empty for a rotation job.
    pub kind: Option<String>,
    /// For a dead notification: its envelope, republished by `dlq retry` (never secrets).
    #[serde(skip)]
    pub payload: Option<String>,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
