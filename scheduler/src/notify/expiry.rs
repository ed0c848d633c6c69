//! The expiry watch, as pure functions over the facts the scan reads anyway: which
//! threshold (if any) a certificate has newly crossed, and when the next announcement for
//! it falls due ([`next_notification_at`], for a due-ordered scan to take
//! `min(rotation due, next notification)`).
//!
//! What was announced is one marker per asset, `<certificate key>/<seconds>`, stored in
//! `assets.expiry_notice`: the certificate key is its SHA-256 fingerprint (or `exp:<unix
//! not_after>` for an imported certificate without one), the seconds the most urgent
//! threshold announced so far (0 for "expired"). A new certificate has a new key, so its
//! thresholds are announced afresh; the same certificate never hears a threshold twice.

use certfleet_shared::db::DbError;
use certfleet_shared::db::scan_rows::{self, ScanRow};
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use std::time::Duration;

/// What the scan knows about an asset's current certificate.
#[derive(Debug, Clone, Copy)]
pub struct CertFacts<'a> {
    /// Start of validity, when known (thresholds longer than the lifetime are skipped).
    pub not_before: Option<DateTime<Utc>>,
    /// End of validity (inventory, or imported expiration).
    pub not_after: Option<DateTime<Utc>>,
    /// SHA-256 fingerprint, when known.
    pub fingerprint: Option<&'a str>,
    /// The marker of the last announcement.
    pub notice: Option<&'a str>,
}

impl<'a> CertFacts<'a> {
    /// The facts of a scan row, with `notice` as the last announcement.
    pub fn of(row: &'a ScanRow, notice: Option<&'a str>) -> Self {
        Self {
            not_before: row.not_before,
            not_after: row.not_after.or(row.certificate_expiration),
            fingerprint: row.fingerprint_sha256.as_deref(),
            notice,
        }
    }
}

/// An announcement that is due now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// `None`: the certificate has expired; `Some(t)`: it expires within `t`.
    pub threshold: Option<Duration>,
    /// The marker to record once announced.
    pub notice: String,
}

fn cert_key(f: &CertFacts<'_>, not_after: DateTime<Utc>) -> String {
    match f.fingerprint {
        Some(fp) if !fp.is_empty() => fp.to_owned(),
        _ => format!("exp:{}", not_after.timestamp()),
    }
}

/// Seconds of the most urgent level already announced for this certificate.
fn announced(f: &CertFacts<'_>, key: &str) -> Option<u64> {
    let (k, secs) = f.notice?.rsplit_once('/')?;
    (k == key).then(|| secs.parse().ok()).flatten()
}

/// The thresholds that apply to this certificate, most distant first: a threshold at
/// least as long as the certificate's whole lifetime would fire at issuance, so it is
/// skipped (a 4-day certificate hears only of a 2-day threshold).
fn applicable(f: &CertFacts<'_>, not_after: DateTime<Utc>, thresholds: &[Duration]) -> Vec<u64> {
    let lifetime = f.not_before.map(|nb| (not_after - nb).num_seconds().max(0).unsigned_abs());
    let mut t: Vec<u64> =
        thresholds.iter().map(Duration::as_secs).filter(|t| *t > 0 && lifetime.is_none_or(|l| *t < l)).collect();
    t.sort_unstable_by(|a, b| b.cmp(a));
    t.dedup();
    t
}

/// The announcement due at `now`, if any: the most urgent level the certificate is in
/// (expired, or the smallest threshold it is within), unless that level or a more urgent
/// one was announced already. Levels skipped over (first seen at 10 days left: 30 and 15
/// are not announced separately) are not sent late. A level is entered at the instant
/// `not_after - threshold` exactly, the instant [`next_notification_at`] names.
pub fn announcement(f: &CertFacts<'_>, thresholds: &[Duration], now: DateTime<Utc>) -> Option<Announcement> {
    let not_after = f.not_after?;
    let key = cert_key(f, not_after);
    let level = if now >= not_after {
        0
    } else {
        applicable(f, not_after, thresholds)
            .into_iter()
            .filter(|t| entered(not_after, *t).is_none_or(|at| now >= at))
            .min()?
    };
    if announced(f, &key).is_some_and(|done| done <= level) {
        return None;
    }
    Some(Announcement { threshold: (level > 0).then(|| Duration::from_secs(level)), notice: format!("{key}/{level}") })
}

/// The instant a certificate is within `t` seconds of `not_after`; `None` when that is
/// before any representable time (it always is).
fn entered(not_after: DateTime<Utc>, t: u64) -> Option<DateTime<Utc>> {
    let t = i64::try_from(t).ok()?;
    not_after.checked_sub_signed(chrono::Duration::try_seconds(t)?)
}

/// The instant the next announcement for this certificate falls due (possibly in the
/// past: then it is due now), or `None` when nothing is left to announce.
pub fn next_notification_at(f: &CertFacts<'_>, thresholds: &[Duration]) -> Option<DateTime<Utc>> {
    let not_after = f.not_after?;
    let done = announced(f, &cert_key(f, not_after));
    let pending = |secs: u64| done.is_none_or(|d| secs < d);
    let mut next = pending(0).then_some(not_after);
    for t in applicable(f, not_after, thresholds).into_iter().filter(|t| pending(*t)) {
        let at = entered(not_after, t).unwrap_or(DateTime::<Utc>::MIN_UTC);
        next = Some(next.map_or(at, |n| n.min(at)));
    }
    next
}

/// After a writer stored a later `next_due_at` than the expiry watch allows (a claim's
/// lease, a rolled-back asset's retry time, `None` for a dead or unroutable asset), pulls
/// it back to the next announcement of each of `rows` (`watch`: the thresholds watched,
/// `None` when no rule watches expiry). Only ever moves a stored time earlier.
pub async fn floor_rows(db: &DatabaseConnection, watch: Option<&[Duration]>, rows: &[ScanRow]) -> Result<u64, DbError> {
    let Some(thresholds) = watch else { return Ok(0) };
    let floors: Vec<(i64, DateTime<Utc>)> = rows
        .iter()
        .filter_map(|r| {
            next_notification_at(&CertFacts::of(r, r.expiry_notice.as_deref()), thresholds).map(|at| (r.id, at))
        })
        .collect();
    if floors.is_empty() {
        return Ok(0);
    }
    scan_rows::pull_next_due(db, &floors).await
}

/// [`floor_rows`] for assets known by id (reads their scan rows).
pub async fn floor_ids(db: &DatabaseConnection, watch: Option<&[Duration]>, ids: &[i64]) -> Result<u64, DbError> {
    if watch.is_none() || ids.is_empty() {
        return Ok(0);
    }
    let rows = scan_rows::by_ids(db, ids).await?;
    floor_rows(db, watch, &rows).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const DAY: u64 = 86_400;

    fn days(d: u64) -> Duration {
        Duration::from_secs(d * DAY)
    }

    fn defaults() -> Vec<Duration> {
        vec![days(30), days(15), days(2)]
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn at(d: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::days(d)
    }

    #[test]
    fn a_threshold_is_announced_once_per_certificate() {
        let not_after = at(100);
        let mut notice: Option<String> = None;
        let mut sent = Vec::new();
        // One scan a day from issuance to a week after expiry.
        for day in 0..107 {
            let f = CertFacts {
                not_before: Some(at(10)),
                not_after: Some(not_after),
                fingerprint: Some("ab"),
                notice: notice.as_deref(),
            };
            if let Some(a) = announcement(&f, &defaults(), at(day)) {
                sent.push((day, a.threshold));
                notice = Some(a.notice);
            }
        }
        assert_eq!(sent, vec![(70, Some(days(30))), (85, Some(days(15))), (98, Some(days(2))), (100, None)]);
    }

    #[test]
    fn skipped_levels_are_not_sent_late_and_a_new_certificate_starts_afresh() {
        let f = CertFacts { not_before: None, not_after: Some(at(10)), fingerprint: None, notice: None };
        let a = announcement(&f, &defaults(), t0()).unwrap();
        assert_eq!(a.threshold, Some(days(15)));
        assert_eq!(a.notice, format!("exp:{}/{}", at(10).timestamp(), 15 * DAY));
        let f2 = CertFacts { notice: Some(&a.notice), ..f };
        assert_eq!(announcement(&f2, &defaults(), at(1)), None);
        // Rotated: a new fingerprint and expiry; the old marker does not hold it back.
        let new = CertFacts {
            not_before: Some(at(1)),
            not_after: Some(at(91)),
            fingerprint: Some("cd"),
            notice: Some(&a.notice),
        };
        assert_eq!(announcement(&new, &defaults(), at(2)), None, "not yet within 30 days");
        assert_eq!(announcement(&new, &defaults(), at(62)).unwrap().threshold, Some(days(30)));
    }

    #[test]
    fn thresholds_longer_than_the_lifetime_are_skipped() {
        // A 4-day certificate: only the 2-day threshold applies.
        let f = CertFacts { not_before: Some(t0()), not_after: Some(at(4)), fingerprint: Some("ef"), notice: None };
        assert_eq!(announcement(&f, &defaults(), at(1)), None);
        assert_eq!(announcement(&f, &defaults(), at(2)).unwrap().threshold, Some(days(2)));
        assert_eq!(next_notification_at(&f, &defaults()), Some(at(2)));
    }

    #[test]
    fn next_notification_instant_follows_the_marker() {
        let f = CertFacts { not_before: None, not_after: Some(at(100)), fingerprint: Some("ab"), notice: None };
        assert_eq!(next_notification_at(&f, &defaults()), Some(at(70)));
        let n = format!("ab/{}", 15 * DAY);
        let f = CertFacts { notice: Some(&n), ..f };
        assert_eq!(next_notification_at(&f, &defaults()), Some(at(98)));
        let n = "ab/0";
        let f = CertFacts { notice: Some(n), ..f };
        assert_eq!(next_notification_at(&f, &defaults()), None);
        let unknown = CertFacts { not_after: None, ..f };
        assert_eq!(next_notification_at(&unknown, &defaults()), None);
    }
}
