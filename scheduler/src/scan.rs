//! One scan of the inventory, as a pipeline of three stages running at once: read pages of
//! narrow rows (keyset pagination, never all in memory) and decide; route and claim the due
//! ones and build their jobs from the claimed rows; publish with confirms, keeping a few
//! batches of confirms outstanding.

use crate::SchedulerError;
use crate::notify::expiry::{self, Announcement, CertFacts};
use crate::notify::{Events, summary};
use crate::policy::{self, Decision, Facts};
use crate::publish::{InFlight, retry_failed, send_jobs};
use crate::routes::Routes;
use certfleet_proto::{EventKind, JobId, Notification, RotationJob};
use certfleet_shared::Config;
use certfleet_shared::amqp::Publisher;
use certfleet_shared::db::assets::{self, ScanRow};
use certfleet_shared::db::history::{self, Claim, ClaimScope};
use certfleet_shared::db::{DbError, job_from_asset};
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, TransactionTrait};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Batches of published jobs whose confirms may be outstanding at once.
const CONFIRM_WINDOW: usize = 8;
/// Due rows claimed in one transaction at most.
const CLAIM_BATCH: usize = 5000;

/// Counts from one scan.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize)]
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
    /// Expiry thresholds announced (each once per certificate and threshold).
    pub expiry_announced: u64,
    /// Jobs the broker would not take (their assets were released for the next scan).
    pub publish_failed: u64,
    /// Seconds spent reading pages.
    pub read_secs: f64,
    /// Seconds spent claiming (marking in flight, history rows).
    pub claim_secs: f64,
    /// Seconds from the publish stage's start to its last confirm.
    pub publish_secs: f64,
}

impl ScanReport {
    fn add(&mut self, o: &ScanReport) {
        self.scanned += o.scanned;
        self.due += o.due;
        self.published += o.published;
        self.unroutable += o.unroutable;
        self.skipped += o.skipped;
        self.expiry_announced += o.expiry_announced;
        self.publish_failed += o.publish_failed;
        self.read_secs += o.read_secs;
        self.claim_secs += o.claim_secs;
        self.publish_secs += o.publish_secs;
    }
}

/// Everything a scan needs. Cheap to clone: the stages run as tasks of their own.
#[derive(Clone)]
pub struct Scanner {
    /// The inventory.
    pub db: DatabaseConnection,
    /// Confirmed publisher.
    pub publisher: Publisher,
    /// Routing table.
    pub routes: Arc<Routes>,
    /// Config (page size, lease, issuers' renewal overrides).
    pub config: Arc<Config>,
    /// Notification events (expiry watch, unroutable assets).
    pub events: Events,
}

/// Claimed jobs on their way to the broker.
struct Batch {
    claims: Vec<Claim>,
    jobs: Vec<RotationJob>,
}

impl Scanner {
    /// Scans the whole inventory once at `now`. The three stages run as tasks of their own,
    /// so reading, claiming and publishing proceed in parallel.
    pub async fn scan(&self, now: DateTime<Utc>) -> Result<ScanReport, SchedulerError> {
        let (due_tx, due_rx) = mpsc::channel(4);
        let (batch_tx, batch_rx) = mpsc::channel(4);
        let (s1, s2, s3) = (self.clone(), self.clone(), self.clone());
        let read = tokio::spawn(async move { s1.read(now, due_tx).await });
        let claim = tokio::spawn(async move { s2.claim(now, due_rx, batch_tx).await });
        let publish = tokio::spawn(async move { s3.publish(batch_rx).await });
        let mut report = ScanReport::default();
        for stage in [read.await, claim.await, publish.await] {
            report.add(&stage.map_err(|e| SchedulerError::Stage(format!("scan stage failed: {e}")))??);
        }
        info!(
            scanned = report.scanned,
            due = report.due,
            published = report.published,
            unroutable = report.unroutable,
            expiry_announced = report.expiry_announced,
            publish_failed = report.publish_failed,
            read_secs = format!("{:.2}", report.read_secs),
            claim_secs = format!("{:.2}", report.claim_secs),
            publish_secs = format!("{:.2}", report.publish_secs),
            "scan finished"
        );
        Ok(report)
    }

    /// Stage 1: pages in id order; passes on the due rows of each page. The expiry watch
    /// looks at the same rows: no extra read of the inventory.
    async fn read(&self, now: DateTime<Utc>, due_tx: mpsc::Sender<Vec<ScanRow>>) -> Result<ScanReport, SchedulerError> {
        let mut report = ScanReport::default();
        let renew_before: HashMap<&str, Option<std::time::Duration>> =
            self.config.issuers.iter().map(|(name, c)| (name.as_str(), c.renew_before())).collect();
        let mut after = 0;
        loop {
            let t = Instant::now();
            let page = assets::scan_page(&self.db, after, self.config.scan_page_size).await?;
            report.read_secs += t.elapsed().as_secs_f64();
            let Some(last) = page.last() else { break };
            after = last.id;
            report.scanned += page.len() as u64;
            let thresholds = self.events.expiry_thresholds();
            if !thresholds.is_empty() {
                let due_notes: Vec<(i64, Option<String>, Announcement)> = page
                    .iter()
                    .filter_map(|a| {
                        let facts = CertFacts {
                            not_before: a.not_before,
                            not_after: a.not_after.or(a.certificate_expiration),
                            fingerprint: a.fingerprint_sha256.as_deref(),
                            notice: a.expiry_notice.as_deref(),
                        };
                        expiry::announcement(&facts, thresholds, now).map(|n| (a.id, a.expiry_notice.clone(), n))
                    })
                    .collect();
                if !due_notes.is_empty() {
                    report.expiry_announced += self.announce_expiry(due_notes, now).await?;
                }
            }
            let due: Vec<ScanRow> = page
                .into_iter()
                .filter(|a| {
                    let rb = renew_before.get(a.certificate_authority.as_str()).copied().flatten();
                    matches!(policy::decide(&Facts::of_scan(a, rb), now), Decision::Due(_))
                })
                .collect();
            report.due += due.len() as u64;
            if !due.is_empty() && due_tx.send(due).await.is_err() {
                break; // a later stage failed; its error is reported
            }
        }
        Ok(report)
    }

    /// Records and announces newly crossed expiry thresholds. The record comes first
    /// (compare-and-set, so two schedulers announce once); a notice that could not be
    /// queued is undone, and the next scan tries again.
    async fn announce_expiry(
        &self,
        due: Vec<(i64, Option<String>, Announcement)>,
        now: DateTime<Utc>,
    ) -> Result<u64, SchedulerError> {
        let ids: Vec<i64> = due.iter().map(|(id, _, _)| *id).collect();
        let rows = assets::by_ids(&self.db, &ids).await?;
        let mut announced = 0;
        for (id, previous, note) in due {
            let Some(row) = rows.iter().find(|r| r.id == id) else { continue };
            if !assets::mark_expiry_notice(&self.db, id, previous.as_deref(), Some(&note.notice)).await? {
                continue;
            }
            let kind =
                if note.threshold.is_some() { EventKind::CertificateExpiring } else { EventKind::CertificateExpired };
            let mut n = Notification::new("", kind, Some(summary(row)), now);
            n.threshold_seconds = note.threshold.map(|t| t.as_secs());
            n.severity = kind.severity(n.threshold_seconds);
            n.fingerprint = row.fingerprint_sha256.clone();
            if self.events.emit(&n).await == 0 {
                let _ = assets::mark_expiry_notice(&self.db, id, Some(&note.notice), previous.as_deref()).await;
                continue;
            }
            info!(asset = %row.system_name, event = %kind, threshold = ?note.threshold, "expiry announced");
            announced += 1;
        }
        Ok(announced)
    }

    /// Stage 2: claims the due assets, then routes the claimed rows and builds their jobs.
    /// A claimed asset that no route leads to is released and marked unroutable (scans
    /// skip unroutable assets, so this costs one wasted claim per routing change).
    async fn claim(
        &self,
        now: DateTime<Utc>,
        mut due_rx: mpsc::Receiver<Vec<ScanRow>>,
        batch_tx: mpsc::Sender<Batch>,
    ) -> Result<ScanReport, SchedulerError> {
        let mut report = ScanReport::default();
        let lease_until = now + chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::hours(1));
        while let Some(first) = due_rx.recv().await {
            // Take what else the reader has ready: one transaction for several pages.
            let mut due = first;
            while due.len() < CLAIM_BATCH
                && let Ok(more) = due_rx.try_recv()
            {
                due.extend(more);
            }
            let t = Instant::now();
            let txn = self.db.begin().await.map_err(DbError::from)?;
            history::relax_durability(&txn).await?;
            let ids: Vec<i64> = due.iter().map(|row| row.id).collect();
            let claimed = history::claim(&txn, &ids, ClaimScope::Scan, now, lease_until).await?;
            report.skipped += (ids.len() - claimed.len()) as u64;
            let mut batch =
                Batch { claims: Vec::with_capacity(claimed.len()), jobs: Vec::with_capacity(claimed.len()) };
            let mut unroutable = Vec::new();
            for asset in claimed {
                let job_id = JobId::new();
                let built = self
                    .routes
                    .route(&asset)
                    .and_then(|driver| job_from_asset(&asset, driver, job_id, 1, now).map_err(|e| e.to_string()));
                match built {
                    Ok(job) => {
                        batch.claims.push(Claim { asset_id: asset.id, job_id, driver: job.driver });
                        batch.jobs.push(job);
                    }
                    Err(reason) => {
                        report.unroutable += 1;
                        warn!(asset = %asset.system_name, %reason, "asset is unroutable");
                        history::mark_unroutable(&txn, asset.id, &reason).await?;
                        unroutable.push((asset, reason));
                    }
                }
            }
            history::record_queued(&txn, &batch.claims, now).await?;
            txn.commit().await.map_err(DbError::from)?;
            report.claim_secs += t.elapsed().as_secs_f64();
            if self.events.wants(EventKind::AssetUnroutable) {
                for (asset, reason) in &unroutable {
                    let mut n = Notification::new("", EventKind::AssetUnroutable, Some(summary(asset)), now);
                    n.reason = Some(reason.clone());
                    self.events.emit(&n).await;
                }
            }
            if batch_tx.send(batch).await.is_err() {
                break;
            }
        }
        Ok(report)
    }

    /// Stage 3: publishes, keeping up to [`CONFIRM_WINDOW`] batches of confirms outstanding.
    async fn publish(&self, mut batch_rx: mpsc::Receiver<Batch>) -> Result<ScanReport, SchedulerError> {
        let mut report = ScanReport::default();
        let mut window: VecDeque<(Batch, InFlight)> = VecDeque::new();
        let started = Instant::now();
        loop {
            if window.len() < CONFIRM_WINDOW
                && let Some(batch) = batch_rx.recv().await
            {
                let sent = send_jobs(&self.publisher, &batch.jobs).await;
                window.push_back((batch, sent));
                continue;
            }
            // The window is full, or no more batches will come: settle the oldest.
            match window.pop_front() {
                Some((batch, sent)) => self.settle(batch, sent, &mut report).await?,
                None => break,
            }
        }
        report.publish_secs = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Awaits one batch's confirms, retries refused jobs, and releases the ones still refused.
    async fn settle(&self, batch: Batch, sent: InFlight, report: &mut ScanReport) -> Result<(), SchedulerError> {
        let failed = retry_failed(&self.publisher, &batch.jobs, sent.confirmed().await).await;
        report.published += (batch.jobs.len() - failed.len()) as u64;
        if failed.is_empty() {
            return Ok(());
        }
        report.publish_failed += failed.len() as u64;
        let reason = format!("publish failed: {}", failed[0].1);
        warn!(count = failed.len(), %reason, "releasing assets whose jobs the broker refused");
        let failed_ids: HashSet<JobId> = failed.iter().map(|(id, _)| *id).collect();
        let claims: Vec<Claim> = batch.claims.into_iter().filter(|c| failed_ids.contains(&c.job_id)).collect();
        history::release(&self.db, &claims, &reason).await?;
        Ok(())
    }
}
