//! An asset's rotation history as operators read it (`certfleet history`, the API): one
//! entry per job, newest first, in plain types rather than the `rotations` table's model.

use super::entity::asset::AssetState;
use super::entity::rotation::{self, RotationStatus};
use super::{DbError, assets};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use uuid::Uuid;

/// One job of an asset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// The job id (also the dead letter's id, when it died).
    pub job_id: Uuid,
    /// The driver it was routed to.
    pub driver: String,
    /// Attempts made (the latest attempt seen).
    pub attempts: i32,
    /// How it ended, or `queued` while it runs.
    pub outcome: RotationStatus,
    /// Error class (`certfleet_proto::ErrorClass` spelling), when it failed.
    pub error_class: Option<String>,
    /// What went wrong, when it failed.
    pub error: Option<String>,
    /// The worker that reported it, once one did.
    pub worker: Option<String>,
    /// When the job was published.
    pub queued_at: DateTime<Utc>,
    /// When it reached its outcome.
    pub finished_at: Option<DateTime<Utc>>,
    /// The exported trace that published it, when there is one.
    pub trace_id: Option<String>,
}

impl From<rotation::Model> for HistoryEntry {
    fn from(r: rotation::Model) -> Self {
        Self {
            job_id: r.job_id,
            driver: r.driver,
            attempts: r.attempt,
            outcome: r.status,
            error_class: r.error_class,
            error: r.error_message,
            worker: r.worker,
            queued_at: r.queued_at,
            finished_at: r.finished_at,
            trace_id: r.trace_id,
        }
    }
}

/// An asset and its jobs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssetHistory {
    /// The asset's name.
    pub system_name: String,
    /// Where the asset stands now.
    pub state: AssetState,
    /// Its jobs, newest first.
    pub jobs: Vec<HistoryEntry>,
}

/// The history of the asset called `system_name`; [`DbError::NotFound`] if there is none.
pub async fn of_asset(db: &impl ConnectionTrait, system_name: &str) -> Result<AssetHistory, DbError> {
    let asset = assets::by_name(db, system_name).await?;
    let rows = rotation::Entity::find()
        .filter(rotation::Column::AssetId.eq(asset.id))
        .order_by_desc(rotation::Column::QueuedAt)
        .order_by_desc(rotation::Column::Id)
        .all(db)
        .await?;
    Ok(AssetHistory {
        system_name: asset.system_name,
        state: asset.state,
        jobs: rows.into_iter().map(HistoryEntry::from).collect(),
    })
}
