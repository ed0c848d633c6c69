//! Operator actions that publish: rotate one asset now, and retry a dead letter (or all of
//! them). Both build the job from the inventory's current row (the source of truth), so a
//! fixed asset is what gets retried.

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
use tracing::Instrument as _;

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
    /// The dead letter can never be retried (whatever the operator fixes).
    #[error("dead letter {job_id} cannot be retried: {why}")]
    NotRetriable {
        /// The job.
        job_id: JobId,
        /// Why.
        why: Unretriable,
    },
    /// The broker would not take the job.
    #[error("publishing the job failed: {0}")]
    Publish(String),
}

/// Why a dead letter can never be retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unretriable {
    /// A poison message: it named no asset (undecodable, or without the asset header).
    #[error("the message named no asset; discard it with `certfleet dlq discard`")]
    NoAsset,
    /// The asset it was for was deleted since.
    #[error("asset {0} no longer exists; discard it with `certfleet dlq discard`")]
    AssetGone(i64),
    /// It was retried or discarded already.
    #[error("it is {0} already")]
    Settled(&'static str),
    /// A dead notification whose event cannot be read back.
    #[error("the notification cannot be read back ({0}); discard it with `certfleet dlq discard`")]
    Unreadable(String),
}

/// What `retry_all_dead` did with each pending dead letter.
#[derive(Debug, Default)]
pub struct RetryAll {
    /// Republished.
    pub retried: Vec<JobId>,
    /// Left alone because they can never be retried, with the reason.
    pub skipped: Vec<(JobId, Unretriable)>,
    /// Retryable but not retried now (unroutable asset, lease running, broker refused).
    pub failed: Vec<(JobId, ManualError)>,
}

impl From<DbError> for ManualError {
    fn from(e: DbError) -> Self {
        Self::Scheduler(e.into())
    }
}

/// Publishes a job for `asset` with `job_id` now, whatever its state, unless a lease runs:
/// the root of the job's trace (or a child of the caller's span, an API request's).
async fn publish_for(
    db: &DatabaseConnection,
    publisher: &Publisher,
    routes: &Routes,
    asset: &asset::Model,
    job_id: JobId,
    lease: Duration,
) -> Result<JobId, ManualError> {
    let span = tracing::info_span!("operator publish", asset = %asset.system_name, job_id = %job_id);
    let trace_id = certfleet_shared::telemetry::sampled_trace_id(&span);
    async move {
        let driver = routes
            .route(asset)
            .map_err(|reason| ManualError::Unroutable { name: asset.system_name.clone(), reason })?;
        let now = Utc::now();
        let job = job_from_asset(asset, driver, job_id, 1, now)
            .map_err(|e| ManualError::Unroutable { name: asset.system_name.clone(), reason: e.to_string() })?;
        let claim = Claim { asset_id: asset.id, job_id, driver };
        let lease_until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::hours(1));
        if history::claim(db, &[asset.id], ClaimScope::Operator, now, lease_until, None).await?.is_empty() {
            return Err(ManualError::InFlight {
                name: asset.system_name.clone(),
                until: asset.lease_until.map_or("unknown".into(), |t| t.to_rfc3339()),
            });
        }
        history::record_queued(db, &[claim], now, trace_id.as_deref()).await?;
        if let Some((_, e)) = publish_jobs(publisher, &[job]).await.into_iter().next() {
            history::release(db, &[claim], &format!("publish failed: {e}")).await?;
            return Err(ManualError::Publish(e.to_string()));
        }
        history::mark_published(db, &[job_id], Utc::now()).await?;
        Ok(job_id)
    }
    .instrument(span)
    .await
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
            Err(crate::notify::RetryError::NotRetriable(why)) => Err(ManualError::NotRetriable { job_id, why }),
        };
    }
    if dl.status != DeadLetterStatus::Pending {
        return Err(ManualError::NotRetriable { job_id, why: Unretriable::Settled(dl.status.as_str()) });
    }
    let Some(asset_id) = dl.asset_id else {
        return Err(ManualError::NotRetriable { job_id, why: Unretriable::NoAsset });
    };
    let asset = asset::Entity::find_by_id(asset_id)
        .one(db)
        .await
        .map_err(DbError::from)?
        .ok_or_else(|| ManualError::NotRetriable { job_id, why: Unretriable::AssetGone(asset_id) })?;
    publish_for(db, publisher, routes, &asset, job_id, lease).await?;
    dead_letters::set_status(db, job_id, DeadLetterStatus::Retried).await?;
    Ok(job_id)
}

/// `certfleet dlq retry --all`: retries every pending dead letter, skipping the ones that
/// can never be retried (poison messages, deleted assets) instead of failing on them.
/// Database failures while listing end the whole run; a failure of one letter does not.
pub async fn retry_all_dead(
    db: &DatabaseConnection,
    publisher: &Publisher,
    routes: &Routes,
    lease: Duration,
) -> Result<RetryAll, ManualError> {
    let mut done = RetryAll::default();
    for letter in dead_letters::list(db, false).await? {
        let job_id = JobId(letter.job_id);
        match retry_dead(db, publisher, routes, job_id, lease).await {
            Ok(id) => done.retried.push(id),
            Err(ManualError::NotRetriable { why, .. }) => done.skipped.push((job_id, why)),
            Err(e) => done.failed.push((job_id, e)),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use certfleet_shared::messages::check_error;

    /// Operator-facing errors of the scheduler: a missing routes file names its OS error
    /// once, and every refusal reads as a sentence.
    #[test]
    fn operator_errors_read_cleanly_and_never_repeat_a_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Routes::load(&dir.path().join("routes.toml")).unwrap_err();
        let text = format!("{:#}", anyhow::Error::from(SchedulerError::from(missing)));
        assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");
        let job_id = JobId::new();
        let errors: Vec<Box<dyn std::error::Error>> = vec![
            Box::new(SchedulerError::from(Routes::load(&dir.path().join("routes.toml")).unwrap_err())),
            Box::new(ManualError::InFlight { name: "web-01".into(), until: "2026-01-01T00:00:00+00:00".into() }),
            Box::new(ManualError::Unroutable { name: "web-01".into(), reason: "no route matches".into() }),
            Box::new(ManualError::NotRetriable { job_id, why: Unretriable::NoAsset }),
            Box::new(ManualError::NotRetriable { job_id, why: Unretriable::AssetGone(7) }),
            Box::new(ManualError::NotRetriable {
                job_id,
                why: Unretriable::Settled(DeadLetterStatus::Retried.as_str()),
            }),
            Box::new(ManualError::Publish("broker refused (nack)".into())),
            Box::new(ManualError::from(DbError::NotFound("asset \"x\"".into()))),
        ];
        for e in &errors {
            check_error(e.as_ref()).unwrap_or_else(|why| panic!("{why}"));
        }
        assert!(errors[3].to_string().contains("named no asset"));
    }
}
