//! After taking the leader lease: jobs that an earlier leader claimed and recorded `queued`
//! but never saw confirmed by the broker (it died between the claim and the confirm) are
//! published again under their own job ids, so that their assets need not wait out the
//! lease. A job that did reach the broker after all is then delivered twice with one id:
//! results apply once per job id, and the install marker turns the second delivery into a
//! validation instead of a second deploy.

use crate::SchedulerError;
use crate::scan::{Batch, Scanner};
use certfleet_proto::JobId;
use certfleet_shared::db::{history, job_from_asset};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Publishes the stranded jobs again; returns how many the broker confirmed.
pub async fn republish_unconfirmed(scanner: &Scanner, now: DateTime<Utc>) -> Result<u64, SchedulerError> {
    let stranded = history::unconfirmed(&scanner.db, now).await?;
    if stranded.is_empty() {
        return Ok(0);
    }
    let mut batch = Batch { claims: Vec::with_capacity(stranded.len()), jobs: Vec::with_capacity(stranded.len()) };
    for (row, asset) in stranded {
        let job_id = JobId(row.job_id);
        let attempt = u32::try_from(row.attempt).unwrap_or(1).max(1);
        let built = scanner
            .routes
            .route(&asset)
            .and_then(|driver| job_from_asset(&asset, driver, job_id, attempt, now).map_err(|e| e.to_string()));
        match built {
            Ok(job) => {
                batch.claims.push(history::Claim { asset_id: asset.id, job_id, driver: job.driver });
                batch.jobs.push(job);
            }
            Err(reason) => {
                warn!(asset = %asset.system_name, %reason, "a stranded job's asset is unroutable now");
                history::mark_unroutable(&scanner.db, asset.id, &reason).await?;
            }
        }
    }
    let stranded = batch.jobs.len();
    let (tx, rx) = mpsc::channel(1);
    // The receiver is alive until `publish` returns, so this send cannot fail.
    let _ = tx.send(batch).await;
    drop(tx);
    let report = scanner.publish(rx).await?;
    info!(
        stranded,
        published = report.published,
        "published again the jobs an earlier leader claimed but never saw confirmed"
    );
    Ok(report.published)
}
