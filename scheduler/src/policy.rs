//! "Is renewal due?" as a chain of small pure policies with an injected clock. The first
//! policy with an opinion decides; if none has one, the asset is not due.

use certfleet_shared::db::assets::ScanRow;
use certfleet_shared::db::entity::asset::{self, AssetState};
use chrono::{DateTime, Duration, Utc};

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
    /// It is inside its renewal window.
    RenewalWindow,
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
        }
    }
}

type Policy = fn(&Facts, DateTime<Utc>) -> Option<Decision>;

/// The chain, in order.
const CHAIN: &[Policy] = &[operator_hold, lease, failed_backoff, unknown_expiry, renewal_window];

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

fn renewal_window(f: &Facts, now: DateTime<Utc>) -> Option<Decision> {
    let not_after = f.not_after?;
    let renew_at = not_after.checked_sub_signed(renew_before(f)).unwrap_or(DateTime::<Utc>::MIN_UTC);
    Some(if now >= renew_at { Decision::Due(DueReason::RenewalWindow) } else { Decision::NotDue(Some(renew_at)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn facts(state: AssetState) -> Facts {
        Facts { state, lease_until: None, not_before: None, not_after: None, renew_before: None }
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
