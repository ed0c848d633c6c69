//! Dead letters recorded from `certfleet.dead`, and the operator actions on them.

use super::DbError;
use super::entity::asset::{self, AssetState};
use super::entity::dead_letter::{self, DeadLetterStatus};
use super::entity::dead_letter_headers;
use super::entity::rotation::{self, RotationStatus};
use certfleet_proto::{DeadKind, ErrorClass, JobId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};

/// A dead letter as read off the queue.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The job (or a generated id for an undecodable message without one).
    pub job_id: JobId,
    /// The asset, when known.
    pub asset_id: Option<i64>,
    /// The asset's name, when known.
    pub system_name: Option<String>,
    /// The driver queue it died on, when known.
    pub driver: Option<String>,
    /// Why.
    pub class: ErrorClass,
    /// Human-readable reason.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
    /// A rotation job or a notification.
    pub kind: DeadKind,
    /// A dead notification's envelope, for `dlq retry`.
    pub payload: Option<String>,
}

impl DeadLetter {
    /// Whether this is a dead notification (it names no asset to retry as a rotation).
    pub fn is_notification(&self) -> bool {
        self.kind == DeadKind::Notification
    }
}

/// What a recorded dead letter was.
pub fn kind(row: &dead_letter::Model) -> DeadKind {
    DeadKind::from_stored(row.kind.as_deref())
}

/// Whether a recorded dead letter is a dead notification.
pub fn is_notification(row: &dead_letter::Model) -> bool {
    kind(row) == DeadKind::Notification
}

/// Records a dead letter (idempotent on the job id: a redelivered dead letter, or the same
/// job dying again after a retry, updates the row and makes it pending again), marks the
/// asset `dead` with the reason and closes the job's history row.
pub async fn record(db: &DatabaseConnection, dl: &DeadLetter) -> Result<(), DbError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let row = dead_letter::ActiveModel {
        job_id: Set(dl.job_id.0),
        asset_id: Set(dl.asset_id),
        system_name: Set(dl.system_name.clone()),
        driver: Set(dl.driver.clone()),
        error_class: Set(dl.class.as_str().to_owned()),
        reason: Set(dl.reason.clone()),
        attempts: Set(i32::try_from(dl.attempts).unwrap_or(i32::MAX)),
        status: Set(DeadLetterStatus::Pending),
        dead_at: Set(now),
        updated_at: Set(now),
        kind: Set(dl.kind.to_stored()),
        payload: Set(dl.payload.clone()),
        ..Default::default()
    };
    dead_letter::Entity::insert(row)
        .on_conflict(
            OnConflict::column(dead_letter::Column::JobId)
                .update_columns([
                    dead_letter::Column::ErrorClass,
                    dead_letter::Column::Reason,
                    dead_letter::Column::Attempts,
                    dead_letter::Column::Status,
                    dead_letter::Column::UpdatedAt,
                    dead_letter::Column::Payload,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    if dl.is_notification() {
        // A dead notification leaves the asset and its rotations alone.
        txn.commit().await?;
        return Ok(());
    }
    if let Some(asset_id) = dl.asset_id {
        asset::Entity::update_many()
            .col_expr(asset::Column::State, Expr::value(AssetState::Dead.as_str()))
            .col_expr(asset::Column::LastError, Expr::value(dl.reason.clone()))
            .col_expr(asset::Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
            // Dead assets wait for an operator (dlq retry claims them afresh).
            .col_expr(asset::Column::NextDueAt, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(asset::Column::UpdatedAt, Expr::value(now))
            .filter(asset::Column::Id.eq(asset_id))
            .exec(&txn)
            .await?;
    }
    rotation::Entity::update_many()
        .col_expr(rotation::Column::Status, Expr::value(RotationStatus::Dead.as_str()))
        .col_expr(rotation::Column::ErrorClass, Expr::value(dl.class.as_str()))
        .col_expr(rotation::Column::ErrorMessage, Expr::value(dl.reason.clone()))
        .col_expr(rotation::Column::Attempt, Expr::value(i32::try_from(dl.attempts).unwrap_or(i32::MAX)))
        .col_expr(rotation::Column::FinishedAt, Expr::value(now))
        .filter(rotation::Column::JobId.eq(dl.job_id.0))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// Dead letters, newest first; only pending ones unless `all`.
pub async fn list(db: &DatabaseConnection, all: bool) -> Result<Vec<dead_letter::Model>, DbError> {
    let mut q = dead_letter::Entity::find().order_by_desc(dead_letter::Column::UpdatedAt);
    if !all {
        q = q.filter(dead_letter::Column::Status.eq(DeadLetterStatus::Pending));
    }
    Ok(q.all(db).await?)
}

/// What the dashboard's dead-letter search asks for.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Retried and discarded ones too, not only pending ones.
    pub all: bool,
    /// A whole job id, or text found (case-insensitive) in the asset, driver, error class
    /// or reason.
    pub q: Option<String>,
}

/// One page of the dead letters matching `search`, newest first, and how many match in all.
/// The filter and the paging run in the database, so a large dead-letter table costs one
/// page's rows per load.
pub async fn page(
    db: &DatabaseConnection,
    search: &Search,
    offset: u64,
    limit: u64,
) -> Result<(Vec<dead_letter::Model>, u64), DbError> {
    use dead_letter::Column as C;
    use sea_orm::sea_query::Func;
    use sea_orm::{Condition, ExprTrait, PaginatorTrait, QuerySelect};
    let mut cond = Condition::all();
    if !search.all {
        cond = cond.add(C::Status.eq(DeadLetterStatus::Pending));
    }
    if let Some(q) = search.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        cond = cond.add(match q.parse::<uuid::Uuid>() {
            Ok(id) => Condition::all().add(C::JobId.eq(id)),
            Err(_) => {
                let escaped = q.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                let pattern = format!("%{escaped}%");
                [C::SystemName, C::Driver, C::ErrorClass, C::Reason].into_iter().fold(Condition::any(), |any, col| {
                    any.add(
                        Expr::expr(Func::lower(Expr::col(col)))
                            .like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\')),
                    )
                })
            }
        });
    }
    let query = dead_letter::Entity::find().filter(cond);
    let total = query.clone().count(db).await?;
    let rows = query.order_by_desc(C::UpdatedAt).order_by_desc(C::Id).offset(offset).limit(limit).all(db).await?;
    Ok((rows, total))
}

/// One dead letter by job id.
pub async fn get(db: &DatabaseConnection, job_id: JobId) -> Result<dead_letter::Model, DbError> {
    dead_letter::Entity::find()
        .filter(dead_letter::Column::JobId.eq(job_id.0))
        .one(db)
        .await?
        .ok_or_else(|| DbError::NotFound(format!("dead letter for job {job_id}")))
}

/// Sets the operator status of a dead letter; a discarded job's history row says so too.
pub async fn set_status(db: &DatabaseConnection, job_id: JobId, status: DeadLetterStatus) -> Result<(), DbError> {
    let txn = db.begin().await?;
    dead_letter::Entity::update_many()
        .col_expr(dead_letter::Column::Status, Expr::value(status.to_value()))
        .col_expr(dead_letter::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(dead_letter::Column::JobId.eq(job_id.0))
        .exec(&txn)
        .await?;
    if status == DeadLetterStatus::Discarded {
        rotation::Entity::update_many()
            .col_expr(rotation::Column::Status, Expr::value(RotationStatus::Discarded.as_str()))
            .filter(rotation::Column::JobId.eq(job_id.0))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

use sea_orm::ActiveEnum as _;

/// Stores the properties and headers a dead letter arrived with (the latest arrival wins).
pub async fn record_headers(db: &DatabaseConnection, job_id: JobId, headers: serde_json::Value) -> Result<(), DbError> {
    use dead_letter_headers::Column as C;
    dead_letter_headers::Entity::insert(dead_letter_headers::ActiveModel {
        job_id: Set(job_id.0),
        headers: Set(headers),
        recorded_at: Set(Utc::now()),
    })
    .on_conflict(OnConflict::column(C::JobId).update_columns([C::Headers, C::RecordedAt]).to_owned())
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The properties and headers a dead letter arrived with, if recorded.
pub async fn headers(db: &DatabaseConnection, job_id: JobId) -> Result<Option<serde_json::Value>, DbError> {
    Ok(dead_letter_headers::Entity::find_by_id(job_id.0).one(db).await?.map(|h| h.headers))
}
