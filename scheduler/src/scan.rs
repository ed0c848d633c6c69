//! One scan of the inventory: stream it in pages (keyset pagination, never all in memory),
//! decide, route, claim, build jobs and publish them with confirms.

use crate::policy::{self, Decision, Facts};
use crate::publish::publish_jobs;
use crate::routes::Routes;
use crate::SchedulerError;
use certfleet_proto::JobId;
use certfleet_shared::Config;
use certfleet_shared::amqp::Publisher;
use certfleet_shared::db::entity::asset::{self, AssetState};
use certfleet_shared::db::history::{self, Claim, ClaimScope};
use certfleet_shared::db::{assets, job_from_asset};
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use std::collections::HashMap;
use tracing::{info, warn};

/// Counts from one scan.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ScanReport {
    /// Rows read.
    pub scanned: u64,
    /// Rows found due.
    pub due: u64,
    /// Jobs confirmed by the broker.
    pub published: u64,
    /// Due rows no route leads to (marked `unroutable`).
    pub unroutable: u64,
    /// Due rows another scheduler had just claimed.
    pub skipped: u64,
    /// Jobs the broker would not take (their assets were released for the next scan).
    pub publish_failed: u64,
}

/// Everything a scan needs.
pub struct Scanner<'a> {
    /// The inventory.
    pub db: &'a DatabaseConnection,
    /// Confirmed publisher.
    pub publisher: &'a Publisher,
    /// Routing table.
    pub routes: &'a Routes,
    /// Config (page size, lease, issuers' renewal overrides).
    pub config: &'a Config,
}

impl Scanner<'_> {
    /// Scans the whole inventory once at `now`.
    pub async fn scan(&self, now: DateTime<Utc>) -> Result<ScanReport, SchedulerError> {
        let mut report = ScanReport::default();
        let renew_before: HashMap<&str, Option<std::time::Duration>> =
            self.config.issuers.iter().map(|(name, c)| (name.as_str(), c.renew_before())).collect();
        let mut after = 0;
        loop {
            let page = assets::page(self.db, after, self.config.scan_page_size).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            report.scanned += page.len() as u64;
            let due: Vec<&asset::Model> = page
                .iter()
                .filter(|a| {
                    let rb = renew_before.get(a.certificate_authority.as_str()).copied().flatten();
                    matches!(policy::decide(&Facts::of(a, rb), now), Decision::Due(_))
                })
                .collect();
            report.due += due.len() as u64;
            self.publish_due(&due, now, &mut report).await?;
        }
        info!(
            scanned = report.scanned,
            due = report.due,
            published = report.published,
            unroutable = report.unroutable,
            publish_failed = report.publish_failed,
            "scan finished"
        );
        Ok(report)
    }

    async fn publish_due(&self, due: &[&asset::Model], now: DateTime<Utc>, report: &mut ScanReport) -> Result<(), SchedulerError> {
        let mut claims = Vec::with_capacity(due.len());
        let mut by_id = HashMap::with_capacity(due.len());
        for asset in due {
            match self.routes.route(asset) {
                Ok(driver) => {
                    claims.push(Claim { asset_id: asset.id, job_id: JobId::new(), driver });
                    by_id.insert(asset.id, *asset);
                }
                Err(reason) => {
                    report.unroutable += 1;
                    warn!(asset = %asset.system_name, %reason, "asset is unroutable");
                    if asset.state != AssetState::Unroutable || asset.last_error.as_deref() != Some(reason.as_str()) {
                        history::mark_unroutable(self.db, asset.id, &reason).await?;
                    }
                }
            }
        }
        let lease_until = now + chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::hours(1));
        let claimed = history::claim(self.db, &claims, ClaimScope::Scan, now, lease_until).await?;
        report.skipped += (claims.len() - claimed.len()) as u64;
        let mut jobs = Vec::with_capacity(claimed.len());
        let mut bad = Vec::new();
        for c in &claimed {
            let Some(asset) = by_id.get(&c.asset_id) else { continue };
            match job_from_asset(asset, c.driver, c.job_id, 1, now) {
                Ok(job) => jobs.push(job),
                Err(e) => bad.push((*c, e.to_string())),
            }
        }
        for (claim, reason) in bad {
            report.unroutable += 1;
            warn!(asset_id = claim.asset_id, %reason, "asset row cannot become a job");
            history::release(self.db, &[claim], &reason).await?;
            history::mark_unroutable(self.db, claim.asset_id, &reason).await?;
        }
        let failed = publish_jobs(self.publisher, &jobs).await;
        report.published += (jobs.len() - failed.len()) as u64;
        if !failed.is_empty() {
            report.publish_failed += failed.len() as u64;
            let reason = format!("publish failed: {}", failed[0].1);
            warn!(count = failed.len(), %reason, "releasing assets whose jobs the broker refused");
            let failed_claims: Vec<Claim> =
                claimed.iter().filter(|c| failed.iter().any(|(id, _)| *id == c.job_id)).copied().collect();
            history::release(self.db, &failed_claims, &reason).await?;
        }
        Ok(())
    }
}
