//! The due-ordered scan against the full scan, over random histories on a real SQLite
//! database: imports, claims, results (rotated and rolled back), dead letters, config
//! changes (renewal lead times and expiry thresholds, with the recompute pass) and time
//! passing. After every step the cheap scan must find exactly the rows the full scan finds
//! due, announce exactly the expiry thresholds a full read finds crossed, and the full pass
//! must correct nothing (and find nothing left to announce).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_proto::{AssetId, CertificateInfo, Driver, ErrorClass, JobId, RotationOutcome, RotationResult};
use certfleet_scheduler::notify::expiry::{self, Announcement};
use certfleet_scheduler::policy::{self, Decision, PolicyInputs};
use certfleet_scheduler::recompute;
use certfleet_scheduler::scan::{Announcer, ScanMode, read_due};
use certfleet_shared::db;
use certfleet_shared::db::assets::{self, AssetInput};
use certfleet_shared::db::dead_letters::{self, DeadLetter};
use certfleet_shared::db::history::{self, Claim, ClaimScope};
use certfleet_shared::db::scan_rows;
use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::DatabaseConnection;
use std::collections::BTreeSet;

const ISSUERS: &[&str] = &["internal", "short"];
const PAGE: u64 = 37;

const DAY: u64 = 86_400;

/// The expiry watches a config change picks from: off, expired only, Lemur's defaults, one.
fn watch(k: usize) -> Option<Vec<std::time::Duration>> {
    let d = |days: u64| std::time::Duration::from_secs(days * DAY);
    [None, Some(vec![]), Some(vec![d(30), d(15), d(2)]), Some(vec![d(7)])][k % 4].clone()
}

fn inputs(short_renew_hours: Option<u64>, expiry_watch: Option<Vec<std::time::Duration>>) -> PolicyInputs {
    let mut renew_before = std::collections::BTreeMap::new();
    renew_before.insert("internal".to_owned(), None);
    renew_before.insert("short".to_owned(), short_renew_hours.map(|h| std::time::Duration::from_secs(h * 3600)));
    PolicyInputs { renew_before, failed_retry_after: std::time::Duration::from_secs(900), expiry_watch }
}

/// Takes every announcement, recording the asset ids.
#[derive(Default)]
struct Recorder(tokio::sync::Mutex<BTreeSet<i64>>);

impl Announcer for Recorder {
    async fn announce(&self, notes: &[(i64, Announcement)], _now: DateTime<Utc>) -> Vec<i64> {
        self.0.lock().await.extend(notes.iter().map(|(id, _)| *id));
        Vec::new()
    }
}

/// Ids with an expiry announcement due, by reading every row now (no writes).
async fn full_announcements(db: &DatabaseConnection, inputs: &PolicyInputs, now: DateTime<Utc>) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    let mut after = 0;
    loop {
        let page = scan_rows::scan_page(db, after, PAGE).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        out.extend(page.iter().filter(|r| inputs.announcement(r, now).is_some()).map(|r| r.id));
    }
    out
}

/// What the scheduler's writers do after storing a later time: pull it back to the next
/// announcement (the claim stage, the results and dead-letter consumers call this).
async fn floor(db: &DatabaseConnection, inputs: &PolicyInputs, ids: &[i64]) {
    expiry::floor_ids(db, inputs.watch(), ids).await.unwrap();
}

/// Due ids by deciding every row now (no writes): what a full scan publishes.
async fn full_due(db: &DatabaseConnection, inputs: &PolicyInputs, now: DateTime<Utc>) -> BTreeSet<i64> {
    let mut due = BTreeSet::new();
    let mut after = 0;
    loop {
        let page = scan_rows::scan_page(db, after, PAGE).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        for row in page {
            if matches!(policy::decide(&inputs.facts(&row), now), Decision::Due(_)) {
                due.insert(row.id);
            }
        }
    }
    due
}

/// What one run of the read stage found.
struct Found {
    due: BTreeSet<i64>,
    corrected: u64,
    announced: BTreeSet<i64>,
}

/// Due ids found by the scheduler's read stage in `mode` (with its writes of
/// `next_due_at` and of expiry markers), its count of corrections, and what it announced.
async fn scan(db: &DatabaseConnection, inputs: &PolicyInputs, now: DateTime<Utc>, mode: ScanMode) -> Found {
    let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
    let recorder = Recorder::default();
    let report = read_due(db, inputs, PAGE, now, mode, tx, &recorder).await.unwrap();
    let mut due = BTreeSet::new();
    while let Ok(page) = rx.try_recv() {
        due.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(report.due as usize, due.len());
    let announced = recorder.0.into_inner();
    assert_eq!(report.expiry_announced as usize, announced.len());
    Found { due, corrected: report.corrected, announced }
}

fn result(job_id: JobId, asset_id: i64, rng: &mut StdRng, now: DateTime<Utc>) -> RotationResult {
    let outcome = if rng.random_bool(0.8) {
        let life = Duration::hours(rng.random_range(2..24 * 60));
        RotationOutcome::Rotated {
            certificate: CertificateInfo {
                serial: format!("{:x}", rng.random::<u32>()),
                sha256_fingerprint: format!("{:064x}", rng.random::<u64>()),
                not_before: now - Duration::minutes(rng.random_range(0..600)),
                not_after: now + life,
                issuer: "CN=test".into(),
                ari_cert_id: None,
                renewal_window: None,
            },
        }
    } else {
        RotationOutcome::RolledBack { cause: "reload failed".into() }
    };
    RotationResult {
        job_id,
        attempt: 1,
        asset_id: AssetId(asset_id),
        system_name: "x".into(),
        driver: Driver::Local,
        outcome,
        worker: "w".into(),
        started_at: now,
        finished_at: now,
        observed_host_key: None,
    }
}

fn random_rows(rng: &mut StdRng, next_name: &mut usize, now: DateTime<Utc>) -> Vec<AssetInput> {
    let mut seen = BTreeSet::new();
    (0..rng.random_range(1..15))
        .map(|_| {
            let name = if *next_name > 0 && rng.random_bool(0.3) {
                format!("a{}", rng.random_range(0..*next_name))
            } else {
                *next_name += 1;
                format!("a{}", *next_name - 1)
            };
            let expiry = match rng.random_range(0..3) {
                0 => None,
                1 => Some(now - Duration::hours(rng.random_range(1..100))),
                _ => Some(now + Duration::hours(rng.random_range(1..24 * 90))),
            };
            AssetInput {
                common_name: format!("{name}.example.test"),
                system_name: name,
                certificate_authority: ISSUERS[rng.random_range(0..2)].into(),
                certificate_expiration: expiry,
                host_platform: "local".into(),
                certificate_validation: true,
                ..AssetInput::default()
            }
        })
        .filter(|r| seen.insert(r.system_name.clone()))
        .collect()
}

/// One random history; returns how many announcements its cheap scans made.
async fn history_run(seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let db = db::connect("sqlite::memory:", std::time::Duration::from_secs(10)).await.unwrap();
    let mut current = inputs(None, watch(seed as usize));
    // Writers stamp the real clock; the simulated clock only moves forward from it.
    let mut now = Utc::now();
    let mut in_flight: Vec<(i64, JobId)> = Vec::new();
    let mut next_name = 0;
    let mut announced_total = 0;
    for step in 0..120 {
        let op = rng.random_range(0..100);
        match op {
            0..20 => {
                let rows = random_rows(&mut rng, &mut next_name, now);
                assets::import(&db, &rows, ISSUERS).await.unwrap();
            }
            20..45 => {
                // Claim some of what the cheap scan finds due, as the claim stage does.
                now = now.max(Utc::now());
                let due = scan(&db, &current, now, ScanMode::Due).await.due;
                let ids: Vec<i64> = due.into_iter().filter(|_| rng.random_bool(0.7)).collect();
                let lease = now + Duration::minutes(rng.random_range(1..30));
                let claimed = history::claim(&db, &ids, ClaimScope::Scan, now, lease, None).await.unwrap();
                let claims: Vec<Claim> = claimed
                    .iter()
                    .map(|a| Claim { asset_id: a.id, job_id: JobId::new(), driver: Driver::Local })
                    .collect();
                history::record_queued(&db, &claims, now, None).await.unwrap();
                floor(&db, &current, &claims.iter().map(|c| c.asset_id).collect::<Vec<_>>()).await;
                in_flight.extend(claims.iter().map(|c| (c.asset_id, c.job_id)));
            }
            45..70 if !in_flight.is_empty() => {
                let k = rng.random_range(0..in_flight.len());
                let (asset_id, job_id) = in_flight.swap_remove(k);
                if rng.random_bool(0.85) {
                    let r = result(job_id, asset_id, &mut rng, Utc::now());
                    let rolled_back = matches!(r.outcome, RotationOutcome::RolledBack { .. });
                    history::apply_results(&db, &[r], current.failed_retry_after).await.unwrap();
                    if rolled_back {
                        floor(&db, &current, &[asset_id]).await;
                    }
                } else {
                    let dl = DeadLetter {
                        job_id,
                        asset_id: Some(asset_id),
                        system_name: None,
                        driver: Some("local".into()),
                        class: ErrorClass::Auth,
                        reason: "refused".into(),
                        attempts: 1,
                        kind: certfleet_proto::DeadKind::Rotation,
                        payload: None,
                    };
                    dead_letters::record(&db, &dl).await.unwrap();
                    floor(&db, &current, &[asset_id]).await;
                }
            }
            70..78 => {
                // A config change (a renewal lead time, the expiry watch), then the one
                // recompute pass.
                let renew = match rng.random_range(0..3) {
                    0 => None,
                    1 => Some(rng.random_range(1..48)),
                    _ => Some(rng.random_range(24 * 10..24 * 40)),
                };
                current = inputs(renew, watch(rng.random_range(0..4)));
                recompute::run(&db, &current, 29).await.unwrap();
                assert!(!recompute::needed(&db, &current).await.unwrap());
            }
            _ => now += Duration::minutes(rng.random_range(1..60 * 24 * 5)),
        }
        now = now.max(Utc::now());
        let expected = full_due(&db, &current, now).await;
        let to_announce = full_announcements(&db, &current, now).await;
        let cheap = scan(&db, &current, now, ScanMode::Due).await;
        assert_eq!(cheap.due, expected, "seed {seed} step {step} (op {op}): cheap scan vs full scan");
        assert_eq!(cheap.announced, to_announce, "seed {seed} step {step} (op {op}): announcements");
        announced_total += cheap.announced.len();
        if step % 10 == 0 {
            let full = scan(&db, &current, now, ScanMode::Full).await;
            assert_eq!(full.due, expected, "seed {seed} step {step}: full pass");
            assert_eq!(full.corrected, 0, "seed {seed} step {step}: the full pass corrected stored times");
            assert!(full.announced.is_empty(), "seed {seed} step {step}: announced twice: {:?}", full.announced);
        }
    }
    announced_total
}

#[tokio::test]
async fn the_cheap_scan_finds_exactly_what_a_full_scan_finds() {
    let mut announced = 0;
    for seed in 0..8 {
        announced += history_run(seed).await;
    }
    assert!(announced > 0, "the histories crossed no expiry threshold: the announcement check proved nothing");
}

/// The full pass notices (and fixes) a stored time that would miss a renewal.
#[tokio::test]
async fn the_full_pass_counts_and_corrects_a_wrong_stored_time() {
    let db = db::connect("sqlite::memory:", std::time::Duration::from_secs(10)).await.unwrap();
    let now = Utc::now();
    let row = AssetInput {
        system_name: "w".into(),
        common_name: "w.example.test".into(),
        certificate_authority: "internal".into(),
        certificate_expiration: Some(now + Duration::days(3)),
        host_platform: "local".into(),
        certificate_validation: true,
        ..AssetInput::default()
    };
    assets::import(&db, &[row], ISSUERS).await.unwrap();
    let current = inputs(None, None);
    let later = now + Duration::seconds(1);
    assert_eq!(scan(&db, &current, later, ScanMode::Due).await.due.len(), 1, "3 days left of an unknown lifetime: due");
    // Corrupt the stored time (as a buggy writer would), far in the future.
    let page = scan_rows::scan_page(&db, 0, 10).await.unwrap();
    scan_rows::store_next_due(&db, &[(page[0].id, page[0].updated_at, Some(now + Duration::days(300)))]).await.unwrap();
    assert!(scan(&db, &current, later, ScanMode::Due).await.due.is_empty(), "the cheap scan trusts the stored time");
    let full = scan(&db, &current, later, ScanMode::Full).await;
    assert_eq!((full.due.len(), full.corrected), (1, 1));
}

/// A certificate 40.5 days from expiry, scanned once a day by the cheap scan only: each
/// threshold is announced once, at the first scan after it is crossed, and never again;
/// a certificate far from expiry is announced nothing.
#[tokio::test]
async fn the_cheap_scan_announces_each_threshold_once() {
    let db = db::connect("sqlite::memory:", std::time::Duration::from_secs(10)).await.unwrap();
    let start = Utc::now();
    let row = |name: &str, days: i64| AssetInput {
        system_name: name.into(),
        common_name: format!("{name}.example.test"),
        certificate_authority: "internal".into(),
        certificate_expiration: Some(start + Duration::days(days) + Duration::hours(12)),
        host_platform: "local".into(),
        certificate_validation: true,
        ..AssetInput::default()
    };
    assets::import(&db, &[row("w", 40), row("quiet", 400)], ISSUERS).await.unwrap();
    let current = inputs(None, watch(2));
    let mut days_announced = Vec::new();
    for day in 0..45 {
        let now = start + Duration::days(day) + Duration::minutes(1);
        let found = scan(&db, &current, now, ScanMode::Due).await;
        days_announced.extend(found.announced.iter().map(|id| (day, *id)));
    }
    let w = assets::by_name(&db, "w").await.unwrap().id;
    assert_eq!(days_announced, vec![(11, w), (26, w), (39, w), (41, w)], "30, 15 and 2 days before, then expired");
}
