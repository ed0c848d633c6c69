//! Job bookkeeping: claiming assets for jobs, the `rotations` history, and applying results.

use super::DbError;
use super::entity::asset::{self, AssetState};
use super::entity::rotation::{self, RotationStatus};
use super::leader::{self, Lease};
use certfleet_proto::{Driver, JobId, RotationOutcome, RotationResult};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};

/// One asset to claim for one new job.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    /// The asset.
    pub asset_id: i64,
    /// The new job.
    pub job_id: JobId,
    /// The driver it is routed to.
    pub driver: Driver,
}

/// Which asset states a claim may take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimScope {
    /// A scan: never dead or unroutable assets.
    Scan,
    /// An operator's explicit request: any state, as long as no lease is running.
    Operator,
}

fn claimable(scope: ClaimScope, now: DateTime<Utc>) -> Condition {
    let lease_free = Condition::any()
        .add(asset::Column::State.ne(AssetState::InFlight))
        .add(asset::Column::LeaseUntil.is_null())
        .add(asset::Column::LeaseUntil.lte(now));
    let cond = Condition::all().add(lease_free);
    match scope {
        ClaimScope::Scan => cond.add(asset::Column::State.is_not_in([AssetState::Dead, AssetState::Unroutable])),
        ClaimScope::Operator => cond,
    }
}

/// Marks the assets in flight until `lease_until`, in one statement, and returns the rows
/// it took, as claimed. An asset whose lease is still running (another scheduler, or an
/// earlier job) is skipped; a scan also skips dead and unroutable assets.
///
/// A scan claims under its scheduler lease (`fence`): if that lease has been lost, the
/// claim takes nothing. Operator actions pass `None`.
pub async fn claim(
    db: &impl ConnectionTrait,
    asset_ids: &[i64],
    scope: ClaimScope,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    fence: Option<&Lease>,
) -> Result<Vec<asset::Model>, DbError> {
    let mut claimed = Vec::with_capacity(asset_ids.len());
    for chunk in asset_ids.chunks(CHUNK) {
        claimed.extend(
            asset::Entity::update_many()
                .col_expr(asset::Column::State, Expr::value(AssetState::InFlight.as_str()))
                .col_expr(asset::Column::LeaseUntil, Expr::value(lease_until))
                // In flight: the policy's next question is whether the lease ran out.
                .col_expr(asset::Column::NextDueAt, Expr::value(lease_until))
                .col_expr(asset::Column::UpdatedAt, Expr::value(now))
                .filter(asset::Column::Id.is_in(chunk.iter().copied()))
                .filter(claimable(scope, now))
                .filter(leader::fence(fence))
                .exec_with_returning(db)
                .await?,
        );
    }
    Ok(claimed)
}

/// Rows per statement: keeps bind parameters under SQLite's 32766 and PostgreSQL's 65535.
const CHUNK: usize = 1000;

/// Lets a claim transaction commit without waiting for its WAL flush (PostgreSQL's
/// `synchronous_commit = off`, for this transaction only; SQLite in WAL mode with
/// `synchronous = NORMAL` already behaves so). Safe here: a claim lost in a crash only
/// means the asset is found due again and its job published again, and jobs are idempotent.
pub async fn relax_durability(txn: &impl ConnectionTrait) -> Result<(), DbError> {
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL synchronous_commit TO OFF").await?;
    }
    Ok(())
}

/// Records a `queued` history row for each job about to be published (a dead-letter retry
/// reuses its job id: the row is reset to attempt 1).
pub async fn record_queued(
    db: &impl ConnectionTrait,
    claims: &[Claim],
    now: DateTime<Utc>,
    trace_id: Option<&str>,
) -> Result<(), DbError> {
    for chunk in claims.chunks(CHUNK) {
        insert_queued(db, chunk, now, trace_id).await?;
    }
    Ok(())
}

async fn insert_queued(
    db: &impl ConnectionTrait,
    claims: &[Claim],
    now: DateTime<Utc>,
    trace_id: Option<&str>,
) -> Result<(), DbError> {
    // A re-queued job (a dead-letter retry) is unconfirmed again until the broker says so,
    // and belongs to the trace that published it again.
    let mut upsert = history_upsert(rotation::Column::QueuedAt);
    upsert.update_columns([rotation::Column::PublishedAt, rotation::Column::TraceId]);
    rotation::Entity::insert_many(claims.iter().map(|c| queued_row(c, now, trace_id)))
        .on_conflict(upsert)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Records that the broker confirmed these jobs.
pub async fn mark_published(db: &impl ConnectionTrait, jobs: &[JobId], now: DateTime<Utc>) -> Result<(), DbError> {
    for chunk in jobs.chunks(CHUNK) {
        rotation::Entity::update_many()
            .col_expr(rotation::Column::PublishedAt, Expr::value(now))
            .filter(rotation::Column::JobId.is_in(chunk.iter().map(|j| j.0)))
            .filter(rotation::Column::PublishedAt.is_null())
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Jobs recorded `queued` whose asset is still in flight but which the broker never
/// confirmed: a scheduler died between its claim and the broker's confirm. Each comes with
/// its asset's row, to build the same job again.
pub async fn unconfirmed(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> Result<Vec<(rotation::Model, asset::Model)>, DbError> {
    let in_flight: Vec<asset::Model> = asset::Entity::find()
        .filter(asset::Column::State.eq(AssetState::InFlight))
        .filter(asset::Column::LeaseUntil.gt(now))
        .all(db)
        .await?;
    let mut out = Vec::new();
    for chunk in in_flight.chunks(CHUNK) {
        let rows = rotation::Entity::find()
            .filter(rotation::Column::AssetId.is_in(chunk.iter().map(|a| a.id)))
            .filter(rotation::Column::Status.eq(RotationStatus::Queued))
            .filter(rotation::Column::PublishedAt.is_null())
            .all(db)
            .await?;
        let by_id: std::collections::HashMap<i64, &asset::Model> = chunk.iter().map(|a| (a.id, a)).collect();
        out.extend(rows.into_iter().filter_map(|row| by_id.get(&row.asset_id).map(|a| (row, (*a).clone()))));
    }
    Ok(out)
}

/// A history row is keyed by its job id: writing it again updates the job's progress
/// columns plus `extra` (the publish time for a re-queued job, the worker for a result).
fn history_upsert(extra: rotation::Column) -> OnConflict {
    OnConflict::column(rotation::Column::JobId)
        .update_columns([
            rotation::Column::Attempt,
            rotation::Column::Status,
            rotation::Column::ErrorClass,
            rotation::Column::ErrorMessage,
            rotation::Column::FinishedAt,
            extra,
        ])
        .to_owned()
}

/// Only the columns a queued row has: the others (error, worker, finish and publish times)
/// are left to their default, NULL; over a re-queued row the upsert writes the error,
/// finish and publish columns back to NULL and leaves the worker as it was. A claim of
/// 1,000 assets binds 6,000 or 7,000 values instead of 12,000, which is most of the
/// statement's cost on PostgreSQL (see BENCHMARKS.md, the due-ordered scan).
fn queued_row(c: &Claim, now: DateTime<Utc>, trace_id: Option<&str>) -> rotation::ActiveModel {
    rotation::ActiveModel {
        job_id: Set(c.job_id.0),
        asset_id: Set(c.asset_id),
        attempt: Set(1),
        driver: Set(c.driver.as_str().to_owned()),
        status: Set(RotationStatus::Queued),
        queued_at: Set(now),
        trace_id: trace_id.map_or(NotSet, |t| Set(Some(t.to_owned()))),
        ..Default::default()
    }
}

/// Undoes claims whose jobs could not be published: the assets become due again (the next
/// scan picks them up) and the never-published history rows, if any, are removed.
pub async fn release(db: &DatabaseConnection, claims: &[Claim], reason: &str) -> Result<(), DbError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    for chunk in claims.chunks(CHUNK) {
        asset::Entity::update_many()
            .col_expr(asset::Column::State, Expr::value(AssetState::Due.as_str()))
            .col_expr(asset::Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(asset::Column::LastError, Expr::value(reason))
            .col_expr(asset::Column::NextDueAt, Expr::value(now))
            .col_expr(asset::Column::UpdatedAt, Expr::value(now))
            .filter(asset::Column::Id.is_in(chunk.iter().map(|c| c.asset_id)))
            .exec(&txn)
            .await?;
        rotation::Entity::delete_many()
            .filter(rotation::Column::JobId.is_in(chunk.iter().map(|c| c.job_id.0)))
            .filter(rotation::Column::Status.eq(RotationStatus::Queued))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Marks an asset unroutable with the reason.
pub async fn mark_unroutable(db: &impl ConnectionTrait, asset_id: i64, reason: &str) -> Result<(), DbError> {
    asset::Entity::update_many()
        .col_expr(asset::Column::State, Expr::value(AssetState::Unroutable.as_str()))
        .col_expr(asset::Column::LastError, Expr::value(reason))
        // Waits for the routes or the asset to change (an import re-evaluates it).
        .col_expr(asset::Column::NextDueAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(asset::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(asset::Column::Id.eq(asset_id))
        .exec(db)
        .await?;
    Ok(())
}

/// What applying a result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The asset and history were updated.
    Updated,
    /// The asset no longer exists; the result was dropped.
    UnknownAsset,
}

/// Records workers' results in one transaction: history rows and the assets' certificate
/// facts and state. Idempotent: a redelivered result rewrites the same rows with the same
/// values, and a later result for the same job (a redone job) wins, as it describes what is
/// installed. Results for assets that no longer exist are skipped.
pub async fn apply_results(
    db: &DatabaseConnection,
    results: &[RotationResult],
    failed_retry_after: std::time::Duration,
) -> Result<Vec<Applied>, DbError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let mut applied = Vec::with_capacity(results.len());
    for result in results {
        let Some(current) = asset::Entity::find_by_id(result.asset_id.0).one(&txn).await? else {
            applied.push(Applied::UnknownAsset);
            continue;
        };
        let pinned = pin_host_key(&current.settings, result.observed_host_key.as_deref());
        let mut row: asset::ActiveModel = current.into();
        if let Some(settings) = pinned {
            row.settings = Set(settings);
        }
        let (status, class, message) = match &result.outcome {
            RotationOutcome::Rotated { certificate: c } => {
                row.state = Set(AssetState::Ok);
                row.not_before = Set(Some(c.not_before));
                row.not_after = Set(Some(c.not_after));
                row.certificate_expiration = Set(Some(c.not_after));
                row.serial = Set(Some(c.serial.clone()));
                row.fingerprint_sha256 = Set(Some(c.sha256_fingerprint.clone()));
                row.issuer_dn = Set(Some(c.issuer.clone()));
                // A certificate without renewal information clears the previous one's.
                row.ari_cert_id = Set(c.ari_cert_id.clone());
                row.renewal_window_start = Set(c.renewal_window.as_ref().map(|w| w.start));
                row.renewal_window_end = Set(c.renewal_window.as_ref().map(|w| w.end));
                row.last_error = Set(None);
                row.lease_until = Set(None);
                // The renewal time needs the issuer's config: the next scan computes it.
                row.next_due_at = Set(Some(now));
                (RotationStatus::Rotated, None, None)
            }
            RotationOutcome::RolledBack { cause } => {
                row.state = Set(AssetState::Failed);
                row.last_error = Set(Some(cause.clone()));
                // For a failed asset the lease is the earliest time of the next try.
                let retry_at = chrono::Duration::from_std(failed_retry_after).unwrap_or(chrono::Duration::MAX);
                row.lease_until = Set(now.checked_add_signed(retry_at));
                row.next_due_at = Set(now.checked_add_signed(retry_at));
                (RotationStatus::RolledBack, Some("rolled_back".to_owned()), Some(cause.clone()))
            }
        };
        row.updated_at = Set(now);
        asset::Entity::update(row).exec(&txn).await?;
        upsert_history(&txn, result, status, class, message).await?;
        applied.push(Applied::Updated);
    }
    txn.commit().await?;
    Ok(applied)
}

/// Trust on first use: the asset's settings with `host_key` set to the key a worker
/// observed, when the settings pin none yet. `None` when nothing changes (no key observed,
/// or a pin is already there: a pin is never replaced by what a device presents).
pub fn pin_host_key(settings: &serde_json::Value, observed: Option<&str>) -> Option<serde_json::Value> {
    let observed = observed?;
    let map = settings.as_object()?;
    if map.get("host_key").is_some_and(|v| !v.is_null()) {
        return None;
    }
    let mut map = map.clone();
    map.insert("host_key".to_owned(), serde_json::Value::String(observed.to_owned()));
    Some(serde_json::Value::Object(map))
}

async fn upsert_history(
    db: &impl ConnectionTrait,
    result: &RotationResult,
    status: RotationStatus,
    class: Option<String>,
    message: Option<String>,
) -> Result<(), DbError> {
    let row = rotation::ActiveModel {
        job_id: Set(result.job_id.0),
        asset_id: Set(result.asset_id.0),
        attempt: Set(i32::try_from(result.attempt).unwrap_or(i32::MAX)),
        driver: Set(result.driver.as_str().to_owned()),
        status: Set(status),
        error_class: Set(class),
        error_message: Set(message),
        worker: Set(Some(result.worker.clone())),
        queued_at: Set(result.started_at),
        finished_at: Set(Some(result.finished_at)),
        ..Default::default()
    };
    rotation::Entity::insert(row)
        .on_conflict(history_upsert(rotation::Column::Worker))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The history of one asset, newest first.
pub async fn for_asset(db: &DatabaseConnection, asset_id: i64) -> Result<Vec<rotation::Model>, DbError> {
    Ok(rotation::Entity::find()
        .filter(rotation::Column::AssetId.eq(asset_id))
        .order_by_desc(rotation::Column::QueuedAt)
        .all(db)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::pin_host_key;
    use serde_json::json;

    #[test]
    fn first_observed_host_key_becomes_the_pin_and_never_replaces_one() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA";
        let pinned = pin_host_key(&json!({"cert_path": "/c"}), Some(key)).unwrap();
        assert_eq!(pinned, json!({"cert_path": "/c", "host_key": key}));
        assert_eq!(pin_host_key(&json!({"host_key": null}), Some(key)), Some(json!({"host_key": key})));
        assert_eq!(pin_host_key(&json!({"host_key": "SHA256:abc"}), Some(key)), None);
        assert_eq!(pin_host_key(&json!({"cert_path": "/c"}), None), None);
    }
}
