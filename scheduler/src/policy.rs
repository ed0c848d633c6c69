//! "Is renewal due?" as a chain of small pure policies with an injected clock. The first
//! policy with an opinion decides; if none has one, the asset is not due.

use certfleet_shared::db::entity::asset::{self, AssetState};
use certfleet_shared::db::scan_rows::ScanRow;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

/// When only the expiry is known (no start of validity, so no lifetime), renew this long
/// before it unless the issuer says otherwise.
pub const DEFAULT_RENEW_BEFORE_UNKNOWN_LIFETIME: Duration = Duration::days(30);

/// The verdict on one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Publish a job now.
    Due(DueReason),
    /// Nothing to do until then (`None`: until something changes).
    NotDue(Option<DateTime<Utc>>),
}

/// Why an asset is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueReason {
    /// Its expiry is unknown.
    UnknownExpiry,
    /// It is inside its renewal window (a fraction of its lifetime before the expiry).
    RenewalWindow,
    /// Its renewal time inside the CA's suggested window (ACME ARI, RFC 9773) has come.
    SuggestedWindow,
    /// Its job's lease ran out without a result.
    LeaseExpired,
    /// A rolled-back rotation waited long enough.
    FailedBackoffOver,
}

/// The facts the policies look at.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// Lifecycle state.
    pub state: AssetState,
    /// Lease (in flight) or next try (failed).
    pub lease_until: Option<DateTime<Utc>>,
    /// Start of validity of the current certificate, if known.
    pub not_before: Option<DateTime<Utc>>,
    /// End of validity: the last rotation's, else the imported expiry.
    pub not_after: Option<DateTime<Utc>>,
    /// The issuer's override of the renewal lead time.
    pub renew_before: Option<std::time::Duration>,
    /// The CA's suggested renewal window (ACME ARI), if it offered one.
    pub suggested: Option<SuggestedWindow>,
}

/// A CA's suggested renewal window with the per-certificate seed that picks the instant
/// inside it (RFC 9773 section 4.2 asks for a uniformly random instant; deriving it from the
/// certificate id makes every scan, on every scheduler, pick the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuggestedWindow {
    /// Start of the window.
    pub start: DateTime<Utc>,
    /// End of the window (exclusive).
    pub end: DateTime<Utc>,
    /// Uniform 64-bit value derived from the certificate's ARI id.
    pub seed: u64,
}

impl SuggestedWindow {
    /// The window of a stored row: both ends present; seeded from `cert_id`.
    pub fn of(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>, cert_id: Option<&str>) -> Option<Self> {
        Some(Self { start: start?, end: end?, seed: seed(cert_id.unwrap_or_default()) })
    }

    /// The instant inside `[start, end)` this certificate renews at; `None` for a malformed
    /// window (`end` before `start`). An empty window (`start == end`) renews at `start`.
    pub fn renew_at(&self) -> Option<DateTime<Utc>> {
        let span = (self.end - self.start).num_milliseconds();
        let span = u64::try_from(span).ok()?;
        // Multiply-shift maps the seed uniformly onto [0, span) without modulo bias.
        let offset = (u128::from(self.seed) * u128::from(span)) >> 64;
        let offset = i64::try_from(offset).ok()?;
        self.start.checked_add_signed(Duration::milliseconds(offset))
    }
}

/// The first 8 bytes of SHA-256 of the certificate id: stable across processes and releases.
fn seed(cert_id: &str) -> u64 {
    let digest = Sha256::digest(cert_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

impl Facts {
    /// Reads the facts off a scan row.
    pub fn of_scan(row: &ScanRow, renew_before: Option<std::time::Duration>) -> Self {
        Self {
            state: row.state,
            lease_until: row.lease_until,
            not_before: row.not_before,
            not_after: row.not_after.or(row.certificate_expiration),
            renew_before,
            suggested: SuggestedWindow::of(
                row.renewal_window_start,
                row.renewal_window_end,
                row.ari_cert_id.as_deref(),
            ),
        }
    }

    /// Reads the facts off an inventory row.
    pub fn of(asset: &asset::Model, renew_before: Option<std::time::Duration>) -> Self {
        Self {
            state: asset.state,
            lease_until: asset.lease_until,
            not_before: asset.not_before,
            not_after: asset.not_after.or(asset.certificate_expiration),
            renew_before,
            suggested: SuggestedWindow::of(
                asset.renewal_window_start,
                asset.renewal_window_end,
                asset.ari_cert_id.as_deref(),
            ),
        }
    }
}

type Policy = fn(&Facts, DateTime<Utc>) -> Option<Decision>;

/// The chain, in order.
const CHAIN: &[Policy] = &[operator_hold, lease, failed_backoff, unknown_expiry, suggested_window, renewal_window];

/// Decides for one asset at `now`.
pub fn decide(facts: &Facts, now: DateTime<Utc>) -> Decision {
    CHAIN.iter().find_map(|p| p(facts, now)).unwrap_or(Decision::NotDue(None))
}

/// Dead and unroutable assets wait for an operator (dlq retry, re-import, new routes).
fn operator_hold(f: &Facts, _: DateTime<Utc>) -> Option<Decision> {
    matches!(f.state, AssetState::Dead | AssetState::Unroutable).then_some(Decision::NotDue(None))
}

/// An in-flight asset waits for its lease; once it has run out the asset is due again.
fn lease(f: &Facts, now: DateTime<Utc>) -> Option<Decision> {
    if f.state != AssetState::InFlight {
        return None;
    }
    match f.lease_until {
        Some(until) if until > now => Some(Decision::NotDue(Some(until))),
        _ => Some(Decision::Due(DueReason::LeaseExpired)),
    }
}

/// A rolled-back asset waits until its next-try time.
fn failed_backoff(f: &Facts, now: DateTime<Utc>) -> Option<Decision> {
    if f.state != AssetState::Failed {
        return None;
    }
    match f.lease_until {
        Some(until) if until > now => Some(Decision::NotDue(Some(until))),
        _ => Some(Decision::Due(DueReason::FailedBackoffOver)),
    }
}

fn unknown_expiry(f: &Facts, _: DateTime<Utc>) -> Option<Decision> {
    f.not_after.is_none().then_some(Decision::Due(DueReason::UnknownExpiry))
}

/// The renewal lead time: the issuer's override, else a third of the lifetime.
pub fn renew_before(f: &Facts) -> Duration {
    if let Some(d) = f.renew_before {
        return Duration::from_std(d).unwrap_or(Duration::MAX);
    }
    match (f.not_before, f.not_after) {
        (Some(start), Some(end)) if end > start => (end - start) / 3,
        _ => DEFAULT_RENEW_BEFORE_UNKNOWN_LIFETIME,
    }
}

/// The CA's suggested window (ACME ARI) decides when there is one: due from this
/// certificate's instant inside it, and at once when the window has passed. A malformed
/// window (end before start) has no opinion, so the lifetime fraction decides.
fn suggested_window(f: &Facts, now: DateTime<Utc>) -> Option<Decision> {
    let window = f.suggested?;
    let renew_at = window.renew_at()?;
    Some(if now >= renew_at { Decision::Due(DueReason::SuggestedWindow) } else { Decision::NotDue(Some(renew_at)) })
}

/// Due a fraction of the lifetime (or the issuer's lead time) before the expiry.
fn renewal_window(f: &Facts, now: DateTime<Utc>) -> Option<Decision> {
    let not_after = f.not_after?;
    let renew_at = not_after.checked_sub_signed(renew_before(f)).unwrap_or(DateTime::<Utc>::MIN_UTC);
    Some(if now >= renew_at { Decision::Due(DueReason::RenewalWindow) } else { Decision::NotDue(Some(renew_at)) })
}

mod due;
pub use due::{PolicyInputs, disagrees, earliest, next_due_at};

#[cfg(test)]
mod suggested_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn facts(state: AssetState) -> Facts {
        Facts { state, lease_until: None, not_before: None, not_after: None, renew_before: None, suggested: None }
    }

    #[test]
    fn unknown_expiry_is_due() {
        assert_eq!(decide(&facts(AssetState::Due), now()), Decision::Due(DueReason::UnknownExpiry));
        assert_eq!(decide(&facts(AssetState::Ok), now()), Decision::Due(DueReason::UnknownExpiry));
    }

    #[test]
    fn due_at_two_thirds_of_the_lifetime() {
        let mut f = facts(AssetState::Ok);
        f.not_before = Some(now() - Duration::days(1));
        f.not_after = Some(now() + Duration::days(2)); // 3-day life: renew 1 day before the end
        assert_eq!(decide(&f, now()), Decision::NotDue(Some(now() + Duration::days(1))));
        assert_eq!(decide(&f, now() + Duration::days(1)), Decision::Due(DueReason::RenewalWindow));
        assert_eq!(
            decide(&f, now() + Duration::days(1) - Duration::seconds(1)),
            Decision::NotDue(Some(now() + Duration::days(1)))
        );
    }

    #[test]
    fn issuer_override_replaces_the_fraction() {
        let mut f = facts(AssetState::Ok);
        f.not_before = Some(now() - Duration::days(80));
        f.not_after = Some(now() + Duration::days(10)); // 90-day life: a third is 30 days
        assert_eq!(decide(&f, now()), Decision::Due(DueReason::RenewalWindow));
        f.renew_before = Some(std::time::Duration::from_secs(7 * 86_400));
        assert_eq!(decide(&f, now()), Decision::NotDue(Some(now() + Duration::days(3))));
    }

    #[test]
    fn imported_expiry_without_lifetime_uses_thirty_days() {
        let mut f = facts(AssetState::Due);
        f.not_after = Some(now() + Duration::days(31));
        assert_eq!(decide(&f, now()), Decision::NotDue(Some(now() + Duration::days(1))));
        f.not_after = Some(now() + Duration::days(29));
        assert_eq!(decide(&f, now()), Decision::Due(DueReason::RenewalWindow));
    }

    #[test]
    fn leases_block_until_they_expire() {
        let mut f = facts(AssetState::InFlight);
        f.lease_until = Some(now() + Duration::minutes(5));
        assert_eq!(decide(&f, now()), Decision::NotDue(Some(now() + Duration::minutes(5))));
        assert_eq!(decide(&f, now() + Duration::minutes(5)), Decision::Due(DueReason::LeaseExpired));
    }

    #[test]
    fn failed_assets_wait_and_dead_or_unroutable_ones_hold() {
        let mut f = facts(AssetState::Failed);
        f.lease_until = Some(now() + Duration::minutes(15));
        assert_eq!(decide(&f, now()), Decision::NotDue(Some(now() + Duration::minutes(15))));
        assert_eq!(decide(&f, now() + Duration::hours(1)), Decision::Due(DueReason::FailedBackoffOver));
        assert_eq!(decide(&facts(AssetState::Dead), now()), Decision::NotDue(None));
        assert_eq!(decide(&facts(AssetState::Unroutable), now()), Decision::NotDue(None));
    }
}
