//! One scan of the inventory, as a pipeline of three stages running at once: read pages of
//! narrow rows (keyset pagination, never all in memory) and decide; route and claim the due
//! ones and build their jobs from the claimed rows; publish with confirms, keeping a few
//! batches of confirms outstanding.
//!
//! A scan reads only the rows whose stored `next_due_at` has come (in that order), so its
//! cost follows the due work, not the inventory. The full pass reads every row in id order
//! and checks each stored time against the policy: a disagreement is a bug, counted,
//! logged and corrected.
//!
//! The expiry watch rides on the same rows: the stored time is the earlier of the
//! rotation's and the next expiry announcement's, so a certificate crossing a threshold is
//! read when it crosses it, announced once ([`Announcer`]), and rescheduled; the watch never
//! reads the inventory on its own.

use crate::SchedulerError;
use crate::notify::expiry::{self, Announcement};
use crate::notify::{Events, summary};
use crate::policy::{self, Decision, PolicyInputs};
use crate::publish::{InFlight, retry_failed, send_jobs};
use crate::routes::Routes;
use certfleet_proto::{EventKind, JobId, Notification, RotationJob};
use certfleet_shared::Config;
use certfleet_shared::amqp::Publisher;
use certfleet_shared::db::history::{self, Claim, ClaimScope};
use certfleet_shared::db::leader::Lease;
use certfleet_shared::db::scan_rows::{self, ScanRow};
use certfleet_shared::db::{DbError, assets, job_from_asset};
use certfleet_shared::metrics::{Metric, counter, histogram};
use certfleet_shared::telemetry;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, TransactionTrait};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::field::Empty;
use tracing::{Instrument as _, error, info, warn};

/// Batches of published jobs whose confirms may be outstanding at once.
const CONFIRM_WINDOW: usize = 8;
/// Due rows claimed in one transaction at most.
const CLAIM_BATCH: usize = 5000;

/// Which rows a scan reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanMode {
    /// Only rows whose `next_due_at` has come, in that order.
    #[default]
    Due,
    /// Every row, checking every stored `next_due_at` against the policy.
    Full,
}

/// Counts from one scan.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ScanReport {
    /// Which rows were read.
    pub mode: ScanMode,
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
    /// Rows read but not due whose `next_due_at` was stored anew (a writer had asked for a
    /// decision, or the full pass corrected it).
    pub rescheduled: u64,
    /// Full pass only: rows whose stored `next_due_at` disagreed with the policy. Always 0
    /// unless there is a bug; each is logged.
    pub corrected: u64,
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
        self.rescheduled += o.rescheduled;
        self.corrected += o.corrected;
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
    /// The scheduler lease this scan claims under (`None`: no fencing, for tests and tools).
    pub lease: Option<Lease>,
    /// Notification events (expiry watch, unroutable assets).
    pub events: Events,
}

/// Claimed jobs on their way to the broker.
pub(crate) struct Batch {
    pub(crate) claims: Vec<Claim>,
    pub(crate) jobs: Vec<RotationJob>,
}

impl Scanner {
    /// Scans once at `now`, reading the rows `mode` says. The three stages run as tasks of
    /// their own, so reading, claiming and publishing proceed in parallel.
    pub async fn scan(&self, now: DateTime<Utc>, mode: ScanMode) -> Result<ScanReport, SchedulerError> {
        let started = Instant::now();
        let mode_label = match mode {
            ScanMode::Due => "due",
            ScanMode::Full => "full",
        };
        // The root of the trace of every job this scan publishes.
        let span = tracing::info_span!("scan", mode = mode_label, due = Empty, published = Empty);
        let (due_tx, due_rx) = mpsc::channel(4);
        let (batch_tx, batch_rx) = mpsc::channel(4);
        let (s1, s2, s3) = (self.clone(), self.clone(), self.clone());
        let read = tokio::spawn(async move { s1.read(now, mode, due_tx).await }.instrument(span.clone()));
        let claim = tokio::spawn(async move { s2.claim(now, due_rx, batch_tx).await }.instrument(span.clone()));
        let publish = tokio::spawn(async move { s3.publish(batch_rx).await }.instrument(span.clone()));
        let mut report = ScanReport { mode, ..ScanReport::default() };
        for stage in [read.await, claim.await, publish.await] {
            report.add(&stage.map_err(|e| SchedulerError::Stage(format!("scan stage failed: {e}")))??);
        }
        span.record("due", report.due);
        span.record("published", report.published);
        let _entered = span.enter();
        histogram!(Metric::ScanDuration.name(), "mode" => mode_label).record(started.elapsed().as_secs_f64());
        counter!(Metric::ScanDue.name()).increment(report.due);
        if report.corrected > 0 {
            error!(corrected = report.corrected, "BUG: the full pass corrected stored next_due_at values");
        }
        info!(
            mode = mode_label,
            scanned = report.scanned,
            due = report.due,
            rescheduled = report.rescheduled,
            corrected = report.corrected,
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

    /// Stage 1: see [`read_due`].
    async fn read(
        &self,
        now: DateTime<Utc>,
        mode: ScanMode,
        due_tx: mpsc::Sender<Vec<ScanRow>>,
    ) -> Result<ScanReport, SchedulerError> {
        let inputs = PolicyInputs::of(&self.config);
        let announcer = EventAnnouncer { db: &self.db, events: &self.events };
        read_due(&self.db, &inputs, self.config.scan_page_size, now, mode, due_tx, &announcer).await
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
        let inputs = PolicyInputs::of(&self.config);
        let trace_id = telemetry::sampled_trace_id(&tracing::Span::current());
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
            let claimed = history::claim(&txn, &ids, ClaimScope::Scan, now, lease_until, self.lease.as_ref()).await?;
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
            history::record_queued(&txn, &batch.claims, now, trace_id.as_deref()).await?;
            txn.commit().await.map_err(DbError::from)?;
            // The claim stored the lease (or, for an unroutable asset, no time at all): pull
            // it back to the next expiry announcement where that comes first.
            let taken: HashSet<i64> =
                batch.claims.iter().map(|c| c.asset_id).chain(unroutable.iter().map(|(a, _)| a.id)).collect();
            let rows: Vec<ScanRow> = due.into_iter().filter(|r| taken.contains(&r.id)).collect();
            expiry::floor_rows(&self.db, inputs.watch(), &rows).await?;
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
    pub(crate) async fn publish(&self, mut batch_rx: mpsc::Receiver<Batch>) -> Result<ScanReport, SchedulerError> {
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
        let waiting = Instant::now();
        let confirmed = sent.confirmed().await;
        histogram!(Metric::PublishConfirm.name()).record(waiting.elapsed().as_secs_f64());
        let failed = retry_failed(&self.publisher, &batch.jobs, confirmed).await;
        report.published += (batch.jobs.len() - failed.len()) as u64;
        let refused: HashSet<JobId> = failed.iter().map(|(id, _)| *id).collect();
        let published: Vec<JobId> = batch.jobs.iter().map(|j| j.job_id).filter(|id| !refused.contains(id)).collect();
        history::mark_published(&self.db, &published, Utc::now()).await?;
        if failed.is_empty() {
            return Ok(());
        }
        report.publish_failed += failed.len() as u64;
        let reason = format!("publish failed: {}", failed[0].1);
        warn!(count = failed.len(), %reason, "releasing assets whose jobs the broker refused");
        let claims: Vec<Claim> = batch.claims.into_iter().filter(|c| refused.contains(&c.job_id)).collect();
        history::release(&self.db, &claims, &reason).await?;
        Ok(())
    }
}

/// Where the read stage hands the expiry announcements it has recorded.
pub trait Announcer: Sync {
    /// Queues one event per announcement (asset id, what to announce); returns the ids of
    /// those that could not be queued (their record is undone and the next scan tries again).
    fn announce(
        &self,
        notes: &[(i64, Announcement)],
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Vec<i64>> + Send;
}

/// The scheduler's announcer: one `certificate_expiring` / `certificate_expired` event per
/// announcement, routed and queued on `certfleet.notify`.
struct EventAnnouncer<'a> {
    db: &'a DatabaseConnection,
    events: &'a Events,
}

impl Announcer for EventAnnouncer<'_> {
    async fn announce(&self, notes: &[(i64, Announcement)], now: DateTime<Utc>) -> Vec<i64> {
        let ids: Vec<i64> = notes.iter().map(|(id, _)| *id).collect();
        let rows = match assets::by_ids(self.db, &ids).await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %e, "could not read the assets of expiry announcements; the next scan tries again");
                return ids;
            }
        };
        let mut lost = Vec::new();
        for (id, note) in notes {
            let Some(row) = rows.iter().find(|r| r.id == *id) else { continue };
            let kind =
                if note.threshold.is_some() { EventKind::CertificateExpiring } else { EventKind::CertificateExpired };
            let mut n = Notification::new("", kind, Some(summary(row)), now);
            n.threshold_seconds = note.threshold.map(|t| t.as_secs());
            n.severity = kind.severity(n.threshold_seconds);
            n.fingerprint = row.fingerprint_sha256.clone();
            if self.events.emit(&n).await.lost() {
                lost.push(*id);
                continue;
            }
            info!(asset = %row.system_name, event = %kind, threshold = ?note.threshold, "expiry announced");
        }
        lost
    }
}

/// Records the page's due announcements (compare-and-set on the asset's marker, so a
/// threshold is announced once even with two schedulers), hands them to `announcer`, and
/// undoes the record of those it could not queue. Returns (announced, ids to look at again).
async fn announce_page(
    db: &DatabaseConnection,
    announcer: &impl Announcer,
    notes: Vec<(i64, Option<String>, Announcement)>,
    now: DateTime<Utc>,
) -> Result<(u64, Vec<i64>), SchedulerError> {
    let mut again = Vec::new();
    let mut recorded = Vec::with_capacity(notes.len());
    let mut previous = HashMap::new();
    for (id, prev, note) in notes {
        if assets::mark_expiry_notice(db, id, prev.as_deref(), Some(&note.notice)).await? {
            previous.insert(id, (prev, note.notice.clone()));
            recorded.push((id, note));
        } else {
            again.push(id); // changed meanwhile: decide it afresh
        }
    }
    let lost = announcer.announce(&recorded, now).await;
    for id in &lost {
        if let Some((prev, notice)) = previous.get(id) {
            assets::mark_expiry_notice(db, *id, Some(notice), prev.as_deref()).await?;
        }
    }
    let announced = (recorded.len() - lost.iter().filter(|id| previous.contains_key(id)).count()) as u64;
    again.extend(lost);
    Ok((announced, again))
}

/// Reads pages (due-ordered, or every row in id order for the full pass), announces the
/// expiry thresholds newly crossed, sends the rotation-due rows of each page on `due_tx`,
/// and stores the computed `next_due_at` of the other rows where it differs from the
/// stored one.
pub async fn read_due(
    db: &DatabaseConnection,
    inputs: &PolicyInputs,
    page_size: u64,
    now: DateTime<Utc>,
    mode: ScanMode,
    due_tx: mpsc::Sender<Vec<ScanRow>>,
    announcer: &impl Announcer,
) -> Result<ScanReport, SchedulerError> {
    let mut report = ScanReport::default();
    let (mut after_id, mut after_due) = (0, None);
    loop {
        let t = Instant::now();
        let page = match mode {
            ScanMode::Due => scan_rows::due_page(db, now, after_due, page_size).await?,
            ScanMode::Full => scan_rows::scan_page(db, after_id, page_size).await?,
        };
        report.read_secs += t.elapsed().as_secs_f64();
        let Some(last) = page.last() else { break };
        after_id = last.id;
        after_due = last.next_due_at.map(|at| (at, last.id));
        report.scanned += page.len() as u64;
        let mut decided = decide_page(page, inputs, now, mode);
        report.corrected += decided.corrected;
        if !decided.announce.is_empty() {
            let t = Instant::now();
            let (announced, again) = announce_page(db, announcer, std::mem::take(&mut decided.announce), now).await?;
            report.expiry_announced += announced;
            if !again.is_empty() {
                // Not announced after all: the stored time must ask for it again now, and a
                // due row goes on with the marker it really has.
                let again_set: HashSet<i64> = again.iter().copied().collect();
                decided.reschedule.retain(|(id, _, _)| !again_set.contains(id));
                for row in decided.due.iter_mut().filter(|r| again_set.contains(&r.id)) {
                    row.expiry_notice = decided.notice_before.remove(&row.id).flatten();
                }
                let pulls: Vec<(i64, DateTime<Utc>)> = again.iter().map(|id| (*id, now)).collect();
                scan_rows::pull_next_due(db, &pulls).await?;
            }
            report.read_secs += t.elapsed().as_secs_f64();
        }
        if !decided.reschedule.is_empty() {
            let t = Instant::now();
            report.rescheduled += scan_rows::store_next_due(db, &decided.reschedule).await?;
            report.read_secs += t.elapsed().as_secs_f64();
        }
        report.due += decided.due.len() as u64;
        if !decided.due.is_empty() && due_tx.send(decided.due).await.is_err() {
            break; // a later stage failed; its error is reported
        }
    }
    Ok(report)
}

/// What one page of rows asks for.
#[derive(Debug, Default)]
pub struct DecidedPage {
    /// The rows due now (for a rotation). A row with an announcement carries the marker it
    /// will have once announced.
    pub due: Vec<ScanRow>,
    /// Expiry announcements due now: (id, marker before, announcement).
    pub announce: Vec<(i64, Option<String>, Announcement)>,
    /// The marker before the announcement of the due rows that have one.
    pub notice_before: HashMap<i64, Option<String>>,
    /// Rows not due whose stored `next_due_at` differs from the computed one:
    /// (id, version, computed).
    pub reschedule: Vec<(i64, DateTime<Utc>, Option<DateTime<Utc>>)>,
    /// Full pass: rows whose stored value disagreed with the policy (a bug).
    pub corrected: u64,
}

/// Decides every row of a page with the policy chain and the expiry watch (pure: no I/O).
/// The times to store assume the page's announcements go out; [`read_due`] asks again
/// for those that do not.
pub fn decide_page(page: Vec<ScanRow>, inputs: &PolicyInputs, now: DateTime<Utc>, mode: ScanMode) -> DecidedPage {
    let mut out = DecidedPage::default();
    for mut row in page {
        let facts = inputs.facts(&row);
        let computed = inputs.next_due_at(&row, now);
        if mode == ScanMode::Full && policy::disagrees(row.next_due_at, computed, now) {
            out.corrected += 1;
            if out.corrected <= 10 {
                error!(asset_id = row.id, stored = ?row.next_due_at, computed = ?computed, "BUG: stored next_due_at disagrees with the policy");
            }
        }
        let announcement = inputs.announcement(&row, now);
        let notice_after = match &announcement {
            Some(a) => Some(a.notice.clone()),
            None => row.expiry_notice.clone(),
        };
        let next_notice = inputs.next_notice_at(&row, notice_after.as_deref());
        if let Some(a) = announcement {
            out.announce.push((row.id, row.expiry_notice.clone(), a));
        }
        match policy::decide(&facts, now) {
            Decision::Due(_) => {
                if notice_after != row.expiry_notice {
                    out.notice_before.insert(row.id, std::mem::replace(&mut row.expiry_notice, notice_after));
                }
                out.due.push(row);
            }
            Decision::NotDue(at) => {
                let at = policy::earliest(at, next_notice);
                if at != row.next_due_at {
                    out.reschedule.push((row.id, row.updated_at, at));
                }
            }
        }
    }
    out
}
