//! Operator actions that publish: rotate one asset now, and retry a dead letter. Both build
//! the job from the inventory's current row (the source of truth), so a fixed asset is
//! what gets retried.

use crate::SchedulerError;
use crate::publish::publish_jobs;
use crate::routes::Routes;
use certfleet_proto::JobId;
use certfleet_shared::amqp::Publisher;
use certfleet_shared::db::entity::asset;
use certfleet_shared::db::entity::dead_letter::DeadLetterStatus;
use certfleet_shared::db::history::{self, Claim, ClaimScope};
use certfleet_shared::db::{DbError, assets, dead_letters, job_from_asset};
use chrono::Utc;
use sea_orm::{DatabaseConnection, EntityTrait};
use std::time::Duration;

/// Why an operator action did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    /// Database, broker or routes failure.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The asset is leased by a job in flight.
    #[error("asset {name:?} already has a job in flight (lease until {until}); wait for it or for the lease to expire")]
    InFlight {
        /// The asset.
        name: String,
        /// Lease end.
        until: String,
    },
    /// No route leads to the asset's driver.
    #[error("asset {name:?} is unroutable: {reason}")]
    Unroutable {
        /// The asset.
        name: String,
        /// Why.
        reason: String,
    },
    /// The dead letter cannot be retried.
    #[error("dead letter {job_id} cannot be retried: {reason}")]
    NotRetriable {
        /// The job.
        job_id: JobId,
        /// Why.
        reason: String,
    },
    /// The broker would not take the job.
    #[error("publishing the job failed: {0}")]
    Publish(String),
}

impl From<DbError> for ManualError {
    fn from(e: DbError) -> Self {
        Self::Scheduler(e.into())
    }
}

/// Publishes a job for `asset` with `job_id` now, whatever its state, unless a lease runs.
async fn publish_for(
    db: &DatabaseConnection,
    publisher: &Publisher,
    routes: &Routes,
    asset: &asset::Model,
    job_id: JobId,
    lease: Duration,
) -> Result<JobId, ManualError> {
    let driver =
        routes.route(asset).map_err(|reason| ManualError::Unroutable { name: asset.system_name.clone(), reason })?;
    let now = Utc::now();
    let job = job_from_asset(asset, driver, job_id, 1, now)
        .map_err(|e| ManualError::Unroutable { name: asset.system_name.clone(), reason: e.to_string() })?;
    let claim = Claim { asset_id: asset.id, job_id, driver };
    let lease_until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::hours(1));
    if history::claim(db, &[asset.id], ClaimScope::Operator, now, lease_until).await?.is_empty() {
        return Err(ManualError::InFlight {
            name: asset.system_name.clone(),
            until: asset.lease_until.map_or("unknown".into(), |t| t.to_rfc3339()),
        });
    }
    history::record_queued(db, &[claim], now).await?;
    if let Some((_, e)) = publish_jobs(publisher, &[job]).await.into_iter().next() {
        history::release(db, &[claim], &format!("publish failed: {e}")).await?;
        return Err(ManualError::Publish(e.to_string()));
    }
    Ok(job_id)
}

/// `certfleet rotate NAME`: publishes a fresh job for the asset now.
pub async fn rotate_now(
    db: &DatabaseConnection,
    publisher: &Publisher,
    routes: &Routes,
    system_name: &str,
    lease: Duration,
) -> Result<JobId, ManualError> {
    let asset = assets::by_name(db, system_name).await?;
    publish_for(db, publisher, routes, &asset, JobId::new(), lease).await
}

/// `certfleet dlq retry JOB_ID`: republishes the dead job with the same job id (its
/// idempotency key) and a fresh attempt count, built from the asset's current row.
pub async fn retry_dead(
    db: &DatabaseConnection,
    publisher: &Publisher,
    routes: &Routes,
    job_id: JobId,
    lease: Duration,
) -> Result<JobId, ManualError> {
    let dl = dead_letters::get(db, job_id).await?;
    if dead_letters::is_notification(&dl) {
        return match crate::notify::retry_dead(db, publisher, job_id).await {
            Ok(()) => Ok(job_id),
            Err(crate::notify::RetryError::Db(e)) => Err(e.into()),
            Err(crate::notify::RetryError::Publish(e)) => Err(ManualError::Publish(e.to_string())),
            Err(crate::notify::RetryError::NotRetriable(reason)) => Err(ManualError::NotRetriable { job_id, reason }),
        };
    }
    if dl.status != DeadLetterStatus::Pending {
        return Err(ManualError::NotRetriable { job_id, reason: format!("it is {:?} already", dl.status) });
    }
    let Some(asset_id) = dl.asset_id else {
        return Err(ManualError::NotRetriable {
            job_id,
            reason: "the message named no asset; discard it with `certfleet dlq discard`".into(),
        });
    };
    let asset =
        asset::Entity::find_by_id(asset_id).one(db).await.map_err(DbError::from)?.ok_or_else(|| {
            ManualError::NotRetriable { job_id, reason: format!("asset {asset_id} no longer exists") }
        })?;
    publish_for(db, publisher, routes, &asset, job_id, lease).await?;
    dead_letters::set_status(db, job_id, DeadLetterStatus::Retried).await?;
    Ok(job_id)
}
