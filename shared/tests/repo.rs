//! Repository tests, run against SQLite (in memory) and the same suite against a real
//! PostgreSQL (a fresh database per test on `TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_proto::{
    AssetId, CertificateInfo, Driver, ErrorClass, JobId, RenewalWindow, RotationOutcome, RotationResult,
};
use certfleet_shared::db::assets::{self, AssetInput, ImportError};
use certfleet_shared::db::dead_letters::{self, DeadLetter};
use certfleet_shared::db::entity::asset::AssetState;
use certfleet_shared::db::entity::dead_letter::DeadLetterStatus;
use certfleet_shared::db::entity::rotation::{self, RotationStatus};
use certfleet_shared::db::history::{self, Claim, ClaimScope};
use certfleet_shared::db::{self, job_from_asset};
use chrono::{Duration, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait};
use std::time::Duration as StdDuration;

const ISSUERS: &[&str] = &["internal"];

fn input(name: &str) -> AssetInput {
    AssetInput {
        system_name: name.into(),
        common_name: format!("{name}.example.test"),
        subject_alternative_name: vec![format!("{name}.example.test"), "10.0.0.1".into()],
        certificate_authority: "internal".into(),
        host_platform: "local".into(),
        certificate_validation: true,
        settings: Some(serde_json::json!({"cert_path": "/tmp/x.crt", "key_path": "/tmp/x.key"})),
        ..AssetInput::default()
    }
}

fn rotated(job_id: JobId, asset_id: i64, fingerprint: &str) -> RotationResult {
    let now = Utc::now();
    RotationResult {
        job_id,
        attempt: 1,
        asset_id: AssetId(asset_id),
        system_name: "a".into(),
        driver: Driver::Local,
        outcome: RotationOutcome::Rotated {
            certificate: CertificateInfo {
                serial: "01".into(),
                sha256_fingerprint: fingerprint.into(),
                not_before: now,
                not_after: now + Duration::days(4),
                issuer: "CN=test".into(),
                ari_cert_id: None,
                renewal_window: None,
            },
        },
        worker: "w".into(),
        started_at: now,
        finished_at: now,
        observed_host_key: None,
    }
}

/// Claims like a scan or an operator does: mark in flight, then record the queued jobs.
async fn claim(
    db: &DatabaseConnection,
    claims: &[Claim],
    scope: ClaimScope,
    now: chrono::DateTime<Utc>,
    lease: chrono::DateTime<Utc>,
) -> usize {
    let ids: Vec<i64> = claims.iter().map(|c| c.asset_id).collect();
    let taken = history::claim(db, &ids, scope, now, lease, None).await.unwrap();
    let queued: Vec<Claim> = claims.iter().filter(|c| taken.iter().any(|a| a.id == c.asset_id)).copied().collect();
    history::record_queued(db, &queued, now, None).await.unwrap();
    queued.len()
}

async fn rotations_of(db: &DatabaseConnection, asset_id: i64) -> Vec<rotation::Model> {
    history::for_asset(db, asset_id).await.unwrap()
}

async fn import_is_all_or_nothing_and_names_row_and_field(db: DatabaseConnection) {
    let mut bad = input("b");
    bad.port = Some(70_000);
    let err = assets::import(&db, &[input("a"), bad], ISSUERS).await.unwrap_err();
    let ImportError::Rows(rows) = &err else { panic!("{err}") };
    assert_eq!((rows[0].row, rows[0].error.field), (2, "port"));
    assert!(err.to_string().contains("row 2 (b): field `port`"), "{err}");
    assert!(assets::list(&db).await.unwrap().is_empty(), "nothing may be written");

    let mut unknown_ca = input("c");
    unknown_ca.certificate_authority = "nope".into();
    let err = assets::import(&db, &[unknown_ca], ISSUERS).await.unwrap_err().to_string();
    assert!(err.contains("certificate_authority") && err.contains("nope"), "{err}");
    let err = assets::import(&db, &[input("d"), input("d")], ISSUERS).await.unwrap_err().to_string();
    assert!(err.contains("row 2 (d)") && err.contains("more than once"), "{err}");
}

async fn reimport_updates_fields_and_keeps_rotation_state(db: DatabaseConnection) {
    assets::import(&db, &[input("a")], ISSUERS).await.unwrap();
    let a = assets::by_name(&db, "a").await.unwrap();
    history::apply_results(&db, &[rotated(JobId::new(), a.id, "ff")], StdDuration::from_secs(60)).await.unwrap();
    history::mark_unroutable(&db, a.id, "x").await.unwrap();
    let mut changed = input("a");
    changed.common_name = "new.example.test".into();
    assets::import(&db, &[changed], ISSUERS).await.unwrap();
    let a2 = assets::by_name(&db, "a").await.unwrap();
    assert_eq!(a2.id, a.id);
    assert_eq!(a2.common_name, "new.example.test");
    assert_eq!(a2.fingerprint_sha256.as_deref(), Some("ff"), "rotation facts are kept");
    assert_eq!(a2.state, AssetState::Due, "an unroutable asset is re-examined after re-import");
    assert_eq!(a2.last_error, None, "its unroutable reason is cleared");
    // A re-import leaves the state of an asset that is not unroutable alone.
    history::apply_results(&db, &[rotated(JobId::new(), a.id, "ee")], StdDuration::from_secs(60)).await.unwrap();
    let rotated_state = assets::by_name(&db, "a").await.unwrap().state;
    assets::import(&db, &[input("a")], ISSUERS).await.unwrap();
    assert_eq!(assets::by_name(&db, "a").await.unwrap().state, rotated_state);
}

async fn claims_respect_leases_and_scope(db: DatabaseConnection) {
    assets::import(&db, &[input("a"), input("b")], ISSUERS).await.unwrap();
    let (a, b) = (assets::by_name(&db, "a").await.unwrap(), assets::by_name(&db, "b").await.unwrap());
    let now = Utc::now();
    let claims = [
        Claim { asset_id: a.id, job_id: JobId::new(), driver: Driver::Local },
        Claim { asset_id: b.id, job_id: JobId::new(), driver: Driver::Local },
    ];
    assert_eq!(claim(&db, &claims, ClaimScope::Scan, now, now + Duration::minutes(10)).await, 2);
    let again = [Claim { job_id: JobId::new(), ..claims[0] }];
    assert_eq!(claim(&db, &again, ClaimScope::Scan, now, now + Duration::minutes(10)).await, 0);
    assert_eq!(claim(&db, &again, ClaimScope::Operator, now, now).await, 0, "operators wait for leases too");
    let later = now + Duration::minutes(11);
    assert_eq!(claim(&db, &again, ClaimScope::Scan, later, later + Duration::minutes(10)).await, 1);
    assert_eq!(rotations_of(&db, a.id).await.len(), 2);

    // Release: the asset is due again and the never-published job leaves no history.
    history::release(&db, &again, "publish failed: nack").await.unwrap();
    let a2 = assets::by_name(&db, "a").await.unwrap();
    assert_eq!((a2.state, a2.last_error.as_deref()), (AssetState::Due, Some("publish failed: nack")));
    assert_eq!(rotations_of(&db, a.id).await.len(), 1);

    // Dead assets: scans skip them, operators may take them.
    let dl = DeadLetter {
        job_id: claims[1].job_id,
        asset_id: Some(b.id),
        system_name: Some("b".into()),
        driver: Some("local".into()),
        class: ErrorClass::InvalidInput,
        reason: "bad path".into(),
        attempts: 1,
        kind: certfleet_proto::DeadKind::Rotation,
        payload: None,
    };
    dead_letters::record(&db, &dl).await.unwrap();
    let retry = [Claim { asset_id: b.id, job_id: dl.job_id, driver: Driver::Local }];
    assert_eq!(claim(&db, &retry, ClaimScope::Scan, later, later).await, 0);
    assert_eq!(claim(&db, &retry, ClaimScope::Operator, later, later).await, 1);
    let rows = rotations_of(&db, b.id).await;
    assert_eq!(
        (rows.len(), rows[0].status, rows[0].attempt),
        (1, RotationStatus::Queued, 1),
        "same job id, fresh attempt"
    );
}

/// A job queued again under its id (a dead-letter retry) starts over: the history row's
/// error, finish and publish times go back to empty, although a queued row does not bind
/// those columns, and the row takes the new trace id.
async fn a_requeued_job_starts_over(db: DatabaseConnection) {
    assets::import(&db, &[input("a")], ISSUERS).await.unwrap();
    let a = assets::by_name(&db, "a").await.unwrap();
    let job = JobId::new();
    let c = Claim { asset_id: a.id, job_id: job, driver: Driver::Local };
    let now = Utc::now();
    history::record_queued(&db, &[c], now, Some("trace-one")).await.unwrap();
    history::mark_published(&db, &[job], now).await.unwrap();
    let mut failed = rotated(job, a.id, "aa");
    failed.outcome = RotationOutcome::RolledBack { cause: "reload failed".into() };
    history::apply_results(&db, &[failed], StdDuration::from_secs(60)).await.unwrap();
    let done = rotations_of(&db, a.id).await.remove(0);
    assert_eq!((done.status, done.error_message.as_deref()), (RotationStatus::RolledBack, Some("reload failed")));
    assert!(done.finished_at.is_some() && done.published_at.is_some(), "{done:?}");

    let later = now + Duration::minutes(1);
    history::record_queued(&db, &[c], later, None).await.unwrap();
    let rows = rotations_of(&db, a.id).await;
    assert_eq!(rows.len(), 1, "one history row per job");
    let again = &rows[0];
    assert_eq!((again.status, again.attempt), (RotationStatus::Queued, 1));
    assert_eq!((again.error_class.as_deref(), again.error_message.as_deref()), (None, None));
    assert_eq!((again.finished_at, again.published_at, again.trace_id.as_deref()), (None, None, None));
    assert_eq!(again.queued_at.timestamp(), later.timestamp());
}

async fn results_apply_once_and_last_wins(db: DatabaseConnection) {
    assets::import(&db, &[input("a")], ISSUERS).await.unwrap();
    let a = assets::by_name(&db, "a").await.unwrap();
    let job = JobId::new();
    let now = Utc::now();
    claim(&db, &[Claim { asset_id: a.id, job_id: job, driver: Driver::Local }], ClaimScope::Scan, now, now).await;
    let first = rotated(job, a.id, "aa");
    let redone = rotated(job, a.id, "bb");
    history::apply_results(&db, &[first.clone(), first, redone], StdDuration::from_secs(60)).await.unwrap();
    let a2 = assets::by_name(&db, "a").await.unwrap();
    assert_eq!((a2.state, a2.fingerprint_sha256.as_deref()), (AssetState::Ok, Some("bb")));
    assert_eq!(a2.certificate_expiration, a2.not_after);
    let rows = rotations_of(&db, a.id).await;
    assert_eq!((rows.len(), rows[0].status), (1, RotationStatus::Rotated), "one history row per job");

    let mut rolled = rotated(JobId::new(), a.id, "cc");
    rolled.outcome = RotationOutcome::RolledBack { cause: "reload failed".into() };
    history::apply_results(&db, &[rolled], StdDuration::from_secs(900)).await.unwrap();
    let a3 = assets::by_name(&db, "a").await.unwrap();
    assert_eq!((a3.state, a3.last_error.as_deref()), (AssetState::Failed, Some("reload failed")));
    assert_eq!(a3.fingerprint_sha256.as_deref(), Some("bb"), "a rollback keeps the installed certificate's facts");
    assert!(a3.lease_until.unwrap() > Utc::now() + Duration::minutes(14));

    let unknown = rotated(JobId::new(), 999_999, "dd");
    let applied = history::apply_results(&db, &[unknown], StdDuration::ZERO).await.unwrap();
    assert_eq!(applied, vec![history::Applied::UnknownAsset]);
}

async fn dead_letters_are_idempotent_and_operator_states_stick(db: DatabaseConnection) {
    assets::import(&db, &[input("a")], ISSUERS).await.unwrap();
    let a = assets::by_name(&db, "a").await.unwrap();
    let dl = DeadLetter {
        job_id: JobId::new(),
        asset_id: Some(a.id),
        system_name: Some("a".into()),
        driver: Some("local".into()),
        class: ErrorClass::RetriesExhausted,
        reason: "gave up".into(),
        attempts: 5,
        kind: certfleet_proto::DeadKind::Rotation,
        payload: None,
    };
    dead_letters::record(&db, &dl).await.unwrap();
    dead_letters::record(&db, &dl).await.unwrap();
    let poison = DeadLetter { job_id: JobId::new(), asset_id: None, system_name: None, driver: None, ..dl.clone() };
    dead_letters::record(&db, &poison).await.unwrap();
    assert_eq!(dead_letters::list(&db, false).await.unwrap().len(), 2);
    let a2 = assets::by_name(&db, "a").await.unwrap();
    assert_eq!((a2.state, a2.last_error.as_deref()), (AssetState::Dead, Some("gave up")));
    dead_letters::set_status(&db, poison.job_id, DeadLetterStatus::Discarded).await.unwrap();
    assert_eq!(dead_letters::list(&db, false).await.unwrap().len(), 1);
    assert_eq!(dead_letters::list(&db, true).await.unwrap().len(), 2);
    assert!(dead_letters::get(&db, JobId::new()).await.is_err());

    // The dashboard's search and paging, in the database.
    for i in 0..7 {
        let more = DeadLetter { job_id: JobId::new(), reason: format!("Timed out {i}_x"), ..dl.clone() };
        dead_letters::record(&db, &more).await.unwrap();
    }
    let search = |all: bool, q: &str| dead_letters::Search { all, q: Some(q.to_owned()) };
    let (first, total) = dead_letters::page(&db, &search(false, ""), 0, 5).await.unwrap();
    assert_eq!((first.len(), total), (5, 8), "8 pending: the first letter and 7 more");
    let (rest, _) = dead_letters::page(&db, &search(false, ""), 5, 5).await.unwrap();
    assert_eq!(rest.len(), 3);
    let ids: std::collections::HashSet<_> = first.iter().chain(&rest).map(|d| d.job_id).collect();
    assert_eq!(ids.len(), 8, "the pages do not overlap");
    assert!(first.windows(2).all(|w| w[0].updated_at >= w[1].updated_at), "newest first");
    assert_eq!(dead_letters::page(&db, &search(false, "timed OUT"), 0, 50).await.unwrap().1, 7, "any case");
    assert_eq!(dead_letters::page(&db, &search(false, "3_x"), 0, 50).await.unwrap().1, 1);
    assert_eq!(dead_letters::page(&db, &search(false, "3_"), 0, 50).await.unwrap().1, 1);
    assert_eq!(dead_letters::page(&db, &search(false, "t_med"), 0, 50).await.unwrap().1, 0, "`_` is no wildcard");
    assert_eq!(dead_letters::page(&db, &search(false, "100%"), 0, 50).await.unwrap().1, 0, "`%` is no wildcard");
    let by_id = search(true, &poison.job_id.to_string());
    let (found, n) = dead_letters::page(&db, &by_id, 0, 50).await.unwrap();
    assert_eq!((n, found[0].job_id, found[0].status), (1, poison.job_id.0, DeadLetterStatus::Discarded));
    assert_eq!(dead_letters::page(&db, &search(false, &poison.job_id.to_string()), 0, 50).await.unwrap().1, 0);
}

async fn pages_stream_every_row_once_and_jobs_convert(db: DatabaseConnection) {
    let rows: Vec<AssetInput> = (0..25).map(|i| input(&format!("n{i:02}"))).collect();
    assets::import(&db, &rows, ISSUERS).await.unwrap();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = assets::page(&db, after, 7).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        seen.extend(page.into_iter().map(|a| a.system_name));
    }
    seen.sort();
    assert_eq!(seen.len(), 25);
    seen.dedup();
    assert_eq!(seen.len(), 25);

    let a = assets::by_name(&db, "n03").await.unwrap();
    let job = job_from_asset(&a, Driver::Local, JobId::new(), 1, Utc::now()).unwrap();
    assert_eq!(job.subject_alternative_names, vec!["n03.example.test", "10.0.0.1"]);
    assert_eq!(job.settings["cert_path"], "/tmp/x.crt");
}

/// ACME renewal information (RFC 9773) from a result is stored, read by the scan's narrow
/// rows, and becomes the next job's `replaces`; a certificate without it clears it.
async fn renewal_info_round_trips_to_scan_rows_and_jobs(db: DatabaseConnection) {
    assets::import(&db, &[input("a"), input("b")], ISSUERS).await.unwrap();
    let a = assets::by_name(&db, "a").await.unwrap();
    let fresh = job_from_asset(&a, Driver::Local, JobId::new(), 1, Utc::now()).unwrap();
    assert_eq!(fresh.replaces, None, "a never-rotated asset replaces nothing");

    let start = Utc.with_ymd_and_hms(2025, 1, 2, 4, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2025, 1, 3, 4, 0, 0).unwrap();
    let mut with_ari = rotated(JobId::new(), a.id, "aa");
    if let RotationOutcome::Rotated { certificate } = &mut with_ari.outcome {
        certificate.ari_cert_id = Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".into());
        certificate.renewal_window = Some(RenewalWindow { start, end, explanation_url: None });
    }
    history::apply_results(&db, &[with_ari], StdDuration::from_secs(60)).await.unwrap();
    let a2 = assets::by_name(&db, "a").await.unwrap();
    assert_eq!(a2.ari_cert_id.as_deref(), Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"));
    assert_eq!((a2.renewal_window_start, a2.renewal_window_end), (Some(start), Some(end)));
    let job = job_from_asset(&a2, Driver::Local, JobId::new(), 1, Utc::now()).unwrap();
    assert_eq!(job.replaces.as_deref(), Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"));

    let rows = certfleet_shared::db::scan_rows::scan_page(&db, 0, 10).await.unwrap();
    let (ra, rb) = (rows.iter().find(|r| r.id == a.id).unwrap(), rows.iter().find(|r| r.id != a.id).unwrap());
    assert_eq!(ra.ari_cert_id.as_deref(), Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"));
    assert_eq!((ra.renewal_window_start, ra.renewal_window_end), (Some(start), Some(end)));
    assert_eq!((rb.ari_cert_id.as_deref(), rb.renewal_window_start, rb.renewal_window_end), (None, None, None));

    // The next certificate came from a CA without ARI: nothing stale stays behind.
    history::apply_results(&db, &[rotated(JobId::new(), a.id, "bb")], StdDuration::from_secs(60)).await.unwrap();
    let a3 = assets::by_name(&db, "a").await.unwrap();
    assert_eq!((a3.ari_cert_id.as_deref(), a3.renewal_window_start, a3.renewal_window_end), (None, None, None));
    assert_eq!(job_from_asset(&a3, Driver::Local, JobId::new(), 1, Utc::now()).unwrap().replaces, None);
}

/// The expiry notice is a compare-and-set read back by the scan's narrow rows; a dead
/// notification is listed but leaves the asset alone.
async fn expiry_notices_and_dead_notifications(db: DatabaseConnection) {
    assets::import(&db, &[input("a")], ISSUERS).await.unwrap();
    let a = assets::by_name(&db, "a").await.unwrap();
    assert!(assets::mark_expiry_notice(&db, a.id, None, Some("exp:1/2592000")).await.unwrap());
    assert!(!assets::mark_expiry_notice(&db, a.id, None, Some("exp:1/2592000")).await.unwrap(), "announced once");
    assert!(assets::mark_expiry_notice(&db, a.id, Some("exp:1/2592000"), Some("exp:1/1296000")).await.unwrap());
    let rows = db::scan_rows::scan_page(&db, 0, 10).await.unwrap();
    assert_eq!(rows[0].expiry_notice.as_deref(), Some("exp:1/1296000"));
    assert_eq!(assets::by_ids(&db, &[a.id]).await.unwrap()[0].system_name, "a");

    let dead_note = DeadLetter {
        job_id: JobId::new(),
        asset_id: None,
        system_name: Some("a".into()),
        driver: None,
        class: ErrorClass::RetriesExhausted,
        reason: "slack answered 500".into(),
        attempts: 8,
        kind: certfleet_proto::DeadKind::Notification,
        payload: Some("{}".into()),
    };
    dead_letters::record(&db, &dead_note).await.unwrap();
    let listed = dead_letters::list(&db, false).await.unwrap();
    assert!(dead_letters::is_notification(&listed[0]));
    assert_eq!(listed[0].payload.as_deref(), Some("{}"));
    assert_eq!(assets::by_name(&db, "a").await.unwrap().state, AssetState::Due, "the asset is untouched");
}

/// `certfleet history`: every job of one asset, newest first, with outcome, class, error,
/// worker and times; an unknown asset is "not found".
async fn asset_history_lists_jobs_newest_first(db: DatabaseConnection) {
    assets::import(&db, &[input("a"), input("other")], ISSUERS).await.unwrap();
    let a = assets::by_name(&db, "a").await.unwrap();
    let other = assets::by_name(&db, "other").await.unwrap();
    let mut first = rotated(JobId::new(), a.id, "aa");
    first.started_at = Utc::now() - Duration::hours(2);
    let mut second = rotated(JobId::new(), a.id, "bb");
    second.started_at = Utc::now() - Duration::hours(1);
    second.attempt = 3;
    second.worker = "worker-2".into();
    second.outcome = RotationOutcome::RolledBack { cause: "reload command \"false\" exited with status 1".into() };
    let elsewhere = rotated(JobId::new(), other.id, "cc");
    history::apply_results(&db, &[first.clone(), second.clone(), elsewhere], StdDuration::from_secs(60)).await.unwrap();

    let h = db::asset_history::of_asset(&db, "a").await.unwrap();
    assert_eq!((h.system_name.as_str(), h.state), ("a", AssetState::Failed));
    assert_eq!(h.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(), vec![second.job_id.0, first.job_id.0]);
    let (newest, oldest) = (&h.jobs[0], &h.jobs[1]);
    assert_eq!(
        (newest.attempts, newest.outcome, newest.worker.as_deref()),
        (3, RotationStatus::RolledBack, Some("worker-2"))
    );
    assert_eq!(newest.error_class.as_deref(), Some("rolled_back"));
    assert_eq!(newest.error.as_deref(), Some("reload command \"false\" exited with status 1"));
    assert!(newest.finished_at.is_some());
    assert_eq!(
        (oldest.outcome, oldest.error.as_deref(), oldest.driver.as_str()),
        (RotationStatus::Rotated, None, "local")
    );
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["jobs"][0]["outcome"], "rolled_back");
    assert_eq!(json["state"], "failed");
    let missing = db::asset_history::of_asset(&db, "nope").await.unwrap_err().to_string();
    assert!(missing.contains("nope") && missing.contains("not found"), "{missing}");
}

/// Batches larger than the databases' bind-parameter limits are split, not refused.
async fn large_batches_fit_bind_limits(db: DatabaseConnection) {
    let rows: Vec<AssetInput> = (0..5000).map(|i| input(&format!("big{i:04}"))).collect();
    assets::import(&db, &rows, ISSUERS).await.unwrap();
    let all = assets::list(&db).await.unwrap();
    let claims: Vec<Claim> =
        all.iter().map(|a| Claim { asset_id: a.id, job_id: JobId::new(), driver: Driver::Local }).collect();
    let now = Utc::now();
    assert_eq!(claim(&db, &claims, ClaimScope::Scan, now, now + Duration::minutes(5)).await, 5000);
    history::release(&db, &claims, "publish failed").await.unwrap();
    assert!(assets::list(&db).await.unwrap().iter().all(|a| a.state == AssetState::Due));
}

async fn sqlite() -> DatabaseConnection {
    db::connect("sqlite::memory:", StdDuration::from_secs(10)).await.unwrap()
}

fn pg_base() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A fresh PostgreSQL database; dropped again by [`drop_pg`].
async fn pg() -> (DatabaseConnection, String) {
    let name = format!("certfleet_t_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(format!("{}/postgres", pg_base()))
        .await
        .expect("PostgreSQL must be running for the repository tests");
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
    admin.close().await.unwrap();
    (db::connect(&format!("{}/{name}", pg_base()), StdDuration::from_secs(10)).await.unwrap(), name)
}

async fn drop_pg(db: DatabaseConnection, name: String) {
    db.close().await.unwrap();
    let admin = sea_orm::Database::connect(format!("{}/postgres", pg_base())).await.unwrap();
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
}

macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod on_sqlite { $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )+ }
        mod on_postgres { $( #[tokio::test] async fn $name() {
            let (db, name) = super::pg().await;
            super::$name(db.clone()).await;
            super::drop_pg(db, name).await;
        } )+ }
    };
}

both_backends!(
    import_is_all_or_nothing_and_names_row_and_field,
    reimport_updates_fields_and_keeps_rotation_state,
    claims_respect_leases_and_scope,
    results_apply_once_and_last_wins,
    a_requeued_job_starts_over,
    dead_letters_are_idempotent_and_operator_states_stick,
    pages_stream_every_row_once_and_jobs_convert,
    large_batches_fit_bind_limits,
    renewal_info_round_trips_to_scan_rows_and_jobs,
    expiry_notices_and_dead_notifications,
    asset_history_lists_jobs_newest_first,
);

/// The bundled SQLite is built without memory statistics (`.cargo/config.toml`): with them,
/// every allocation and free takes one process-wide mutex, and concurrent readers queue on
/// it (BENCHMARKS.md, search through the API).
#[tokio::test]
async fn sqlite_is_built_without_memory_statistics() {
    let db = sqlite().await;
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(db.get_database_backend(), "PRAGMA compile_options"))
        .await
        .unwrap();
    let options: Vec<String> = rows.iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect();
    assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "SQLite compile options: {options:?}");
}

#[tokio::test]
async fn concurrent_first_starts_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/x.db?mode=rwc", dir.path().display());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let u = url.clone();
            tokio::spawn(async move { db::connect(&u, StdDuration::from_secs(10)).await.map(|_| ()) })
        })
        .collect();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let db = db::connect(&url, StdDuration::from_secs(10)).await.unwrap();
    assert!(rotation::Entity::find().all(&db).await.unwrap().is_empty());
}

/// An inventory created before the renewal-information migration keeps its rows and gains
/// the new columns, empty, on the next start.
#[tokio::test]
async fn upgrading_an_inventory_adds_empty_renewal_columns() {
    use sea_orm_migration::MigratorTrait as _;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/old.db?mode=rwc", dir.path().display());
    let old = sea_orm::Database::connect(&url).await.unwrap();
    db::migration::Migrator::up(&old, Some(1)).await.unwrap();
    old.execute_unprepared(
        "INSERT INTO assets (system_name, common_name, subject_alternative_name, certificate_authority, \
         host_platform, certificate_validation, key_algorithm, settings, state, updated_at) \
         VALUES ('old', 'old.example.test', '[]', 'internal', 'local', 1, 'ecdsa-p256', '{}', 'ok', \
         '2026-11-23T08:00:00+00:00')",
    )
    .await
    .unwrap();
    old.close().await.unwrap();
    let db = db::connect(&url, StdDuration::from_secs(10)).await.unwrap();
    let a = assets::by_name(&db, "old").await.unwrap();
    assert_eq!((a.ari_cert_id, a.renewal_window_start, a.renewal_window_end), (None, None, None));
    assert!(db::migration::Migrator::get_pending_migrations(&db).await.unwrap().is_empty());
}

/// An inventory migrated by a build without notifications (M0001..M0003 and M0005, as
/// `main` had them) takes M0004 afterwards: its columns are added, and the rows keep
/// their stored `next_due_at`.
#[tokio::test]
async fn an_inventory_with_the_due_scan_takes_the_notification_columns_later() {
    use sea_orm_migration::MigratorTrait as _;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/due.db?mode=rwc", dir.path().display());
    let db = db::connect(&url, StdDuration::from_secs(10)).await.unwrap();
    assets::import(&db, &[input("a")], ISSUERS).await.unwrap();
    // Undo M0004 alone, as if it had never run.
    db.execute_unprepared("ALTER TABLE assets DROP COLUMN expiry_notice").await.unwrap();
    db.execute_unprepared("ALTER TABLE dead_letters DROP COLUMN kind").await.unwrap();
    db.execute_unprepared("ALTER TABLE dead_letters DROP COLUMN payload").await.unwrap();
    db.execute_unprepared("DELETE FROM seaql_migrations WHERE version = 'm0004_notifications'").await.unwrap();
    let pending = db::migration::Migrator::get_pending_migrations(&db).await.unwrap();
    assert_eq!(pending.iter().map(|m| m.name().to_owned()).collect::<Vec<_>>(), vec!["m0004_notifications"]);
    db.close().await.unwrap();
    let db = db::connect(&url, StdDuration::from_secs(10)).await.unwrap();
    assert!(db::migration::Migrator::get_pending_migrations(&db).await.unwrap().is_empty());
    let a = assets::by_name(&db, "a").await.unwrap();
    assert_eq!(a.expiry_notice, None);
    assert!(a.next_due_at.is_some(), "M0005's column and value are kept");
    assert!(assets::mark_expiry_notice(&db, a.id, None, Some("exp:1/0")).await.unwrap());
}

#[tokio::test]
async fn unreachable_database_names_the_url_without_password() {
    let err =
        db::connect("postgres://u:hunter2@127.0.0.1:1/x", StdDuration::from_secs(5)).await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1:1") && !err.contains("hunter2"), "{err}");
}
