//! Tests of the ARI policy (RFC 9773 suggested windows) against the RFC's own examples.

use super::*;
use chrono::TimeZone;

/// RFC 9773 section 4.1's example CertID (AKI 69:88:5B:... and serial 00:87:65:43:21).
const RFC_CERT_ID: &str = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";

/// RFC 9773 section 4.2's example `suggestedWindow`.
fn rfc_window() -> (DateTime<Utc>, DateTime<Utc>) {
    (Utc.with_ymd_and_hms(2025, 1, 2, 4, 0, 0).unwrap(), Utc.with_ymd_and_hms(2025, 1, 3, 4, 0, 0).unwrap())
}

/// A current certificate with a 90-day life that ends long after the window, so only the
/// window can make it due.
fn facts(start: DateTime<Utc>, end: DateTime<Utc>, cert_id: &str) -> Facts {
    Facts {
        state: AssetState::Ok,
        lease_until: None,
        not_before: Some(start - Duration::days(30)),
        not_after: Some(start + Duration::days(60)),
        renew_before: None,
        suggested: SuggestedWindow::of(Some(start), Some(end), Some(cert_id)),
    }
}

#[test]
fn rfc_example_renews_at_one_pinned_instant_inside_the_window() {
    let (start, end) = rfc_window();
    let f = facts(start, end, RFC_CERT_ID);
    let at = f.suggested.unwrap().renew_at().unwrap();
    // SHA-256 of the id picks it: pinned, so schedulers of every release agree.
    assert_eq!(at, Utc.with_ymd_and_hms(2025, 1, 2, 21, 25, 18).unwrap() + Duration::milliseconds(917));
    assert!(start <= at && at < end);
    assert_eq!(decide(&f, start - Duration::days(1)), Decision::NotDue(Some(at)));
    assert_eq!(decide(&f, at - Duration::milliseconds(1)), Decision::NotDue(Some(at)));
    assert_eq!(decide(&f, at), Decision::Due(DueReason::SuggestedWindow));
    assert_eq!(decide(&f, end + Duration::hours(1)), Decision::Due(DueReason::SuggestedWindow));
}

#[test]
fn the_window_overrides_the_lifetime_fraction_both_ways() {
    let (start, end) = rfc_window();
    // The fraction alone would say due a third of the life before the end; the window is later.
    let mut f = facts(start, end, RFC_CERT_ID);
    f.not_before = Some(start - Duration::days(89));
    f.not_after = Some(start + Duration::days(1));
    assert_eq!(
        decide(&f, start - Duration::hours(1)),
        Decision::NotDue(Some(f.suggested.unwrap().renew_at().unwrap()))
    );
    // And a window long before the fraction's time makes the asset due early.
    let g = facts(start, end, RFC_CERT_ID);
    assert_eq!(decide(&g, end), Decision::Due(DueReason::SuggestedWindow));
    let mut no_window = g;
    no_window.suggested = None;
    assert!(matches!(decide(&no_window, end), Decision::NotDue(Some(_))));
}

#[test]
fn instants_are_deterministic_and_spread_over_the_window() {
    let (start, end) = rfc_window();
    let instants: Vec<DateTime<Utc>> = (0..2000)
        .map(|i| SuggestedWindow::of(Some(start), Some(end), Some(&format!("aYhba4dGQEHhs3uEe6CuLN4ByNQ.{i:06}"))))
        .map(|w| w.unwrap().renew_at().unwrap())
        .collect();
    assert!(instants.iter().all(|t| start <= *t && *t < end));
    // Every scan computes the same instant for the same certificate.
    let again = SuggestedWindow::of(Some(start), Some(end), Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.000007"));
    assert_eq!(again.unwrap().renew_at().unwrap(), instants[7]);
    // Roughly uniform: each quarter of the window gets about a quarter of the certificates.
    let quarter = (end - start) / 4;
    for q in 0..4 {
        let (lo, hi) = (start + quarter * q, start + quarter * (q + 1));
        let n = instants.iter().filter(|t| lo <= **t && **t < hi).count();
        assert!((400..=600).contains(&n), "quarter {q} got {n} of 2000");
    }
}

#[test]
fn an_empty_window_renews_at_its_start() {
    let (start, _) = rfc_window();
    let f = facts(start, start, RFC_CERT_ID);
    assert_eq!(f.suggested.unwrap().renew_at(), Some(start));
    assert_eq!(decide(&f, start - Duration::seconds(1)), Decision::NotDue(Some(start)));
    assert_eq!(decide(&f, start), Decision::Due(DueReason::SuggestedWindow));
}

#[test]
fn a_window_in_the_past_is_due_now() {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
    let f = facts(now - Duration::days(3), now - Duration::days(2), RFC_CERT_ID);
    assert_eq!(decide(&f, now), Decision::Due(DueReason::SuggestedWindow));
}

#[test]
fn a_malformed_window_is_ignored_and_the_fraction_decides() {
    let (start, end) = rfc_window();
    let f = facts(end, start, RFC_CERT_ID); // end before start
    assert_eq!(f.suggested.unwrap().renew_at(), None);
    // 90-day life ending at end + 60 days: the fraction says due 30 days before the expiry.
    let fraction_at = f.not_after.unwrap() - Duration::days(30);
    assert_eq!(decide(&f, start), Decision::NotDue(Some(fraction_at)));
    assert_eq!(decide(&f, fraction_at), Decision::Due(DueReason::RenewalWindow));
}

#[test]
fn half_a_window_is_no_window() {
    let (start, _) = rfc_window();
    assert_eq!(SuggestedWindow::of(Some(start), None, Some(RFC_CERT_ID)), None);
    assert_eq!(SuggestedWindow::of(None, Some(start), Some(RFC_CERT_ID)), None);
}

#[test]
fn holds_and_leases_still_come_first() {
    let (start, end) = rfc_window();
    let mut f = facts(start, end, RFC_CERT_ID);
    f.state = AssetState::Dead;
    assert_eq!(decide(&f, end), Decision::NotDue(None));
    f.state = AssetState::InFlight;
    f.lease_until = Some(end + Duration::hours(1));
    assert_eq!(decide(&f, end), Decision::NotDue(Some(end + Duration::hours(1))));
}
