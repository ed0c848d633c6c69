//! When to ask the policy chain next: the stored `next_due_at`, and the fingerprint of the
//! config inputs those stored values were computed with.

use super::{Decision, Facts, decide};
use crate::notify::expiry::{self, Announcement, CertFacts};
use certfleet_shared::Config;
use certfleet_shared::db::scan_rows::ScanRow;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

/// Bump when the policy chain itself changes meaning, so stored times are recomputed.
const POLICY_VERSION: u32 = 1;

/// The policy inputs that come from config, in one place: everything the chain reads that
/// is not on the asset row. Later inputs (renewal windows, per-data-centre limits) go here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInputs {
    /// Each issuer's renewal lead time override.
    pub renew_before: BTreeMap<String, Option<Duration>>,
    /// How long a rolled-back asset waits (applied when its result is recorded).
    pub failed_retry_after: Duration,
    /// The expiry watch: the thresholds some `[[notify.rule]]` announces, most distant
    /// first (`certificate_expired` is announced whenever the watch is on); `None` when no
    /// rule takes either expiry event. The stored `next_due_at` is the earlier of the
    /// rotation's time and the next announcement's.
    pub expiry_watch: Option<Vec<Duration>>,
}

impl PolicyInputs {
    /// Reads the inputs off the config.
    pub fn of(config: &Config) -> Self {
        Self {
            renew_before: config.issuers.iter().map(|(name, c)| (name.clone(), c.renew_before())).collect(),
            failed_retry_after: config.failed_retry_after,
            expiry_watch: crate::notify::router::expiry_watch(&config.notify),
        }
    }

    /// The expiry watch's thresholds, `None` when it is off.
    pub fn watch(&self) -> Option<&[Duration]> {
        self.expiry_watch.as_deref()
    }

    /// The expiry announcement `row` is due at `now`, if the watch is on.
    pub fn announcement(&self, row: &ScanRow, now: DateTime<Utc>) -> Option<Announcement> {
        expiry::announcement(&CertFacts::of(row, row.expiry_notice.as_deref()), self.watch()?, now)
    }

    /// When the next announcement about `row` falls due, had `notice` been the last one.
    pub fn next_notice_at(&self, row: &ScanRow, notice: Option<&str>) -> Option<DateTime<Utc>> {
        expiry::next_notification_at(&CertFacts::of(row, notice), self.watch()?)
    }

    /// The next instant the scheduler must look at `row`: the earlier of the policy
    /// chain's [`next_due_at`] and the next expiry announcement.
    pub fn next_due_at(&self, row: &ScanRow, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        earliest(next_due_at(&self.facts(row), now), self.next_notice_at(row, row.expiry_notice.as_deref()))
    }

    /// The facts of a scan row under these inputs.
    pub fn facts(&self, row: &ScanRow) -> Facts {
        let rb = self.renew_before.get(&row.certificate_authority).copied().flatten();
        Facts::of_scan(row, rb)
    }

    /// Whether the chain says `asset` is due at `now` (`certfleet assets list --due`, the
    /// API's `due=true`).
    pub fn is_due(&self, asset: &certfleet_shared::db::entity::asset::Model, now: DateTime<Utc>) -> bool {
        let rb = self.renew_before.get(&asset.certificate_authority).copied().flatten();
        matches!(decide(&Facts::of(asset, rb), now), Decision::Due(_))
    }

    /// A stable digest of the inputs: when it changes, every stored `next_due_at` is
    /// recomputed once.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!("v{POLICY_VERSION};failed={}", self.failed_retry_after.as_millis()));
        for (name, rb) in &self.renew_before {
            h.update(format!(";{name}={}", rb.map_or(-1, |d| i128::try_from(d.as_millis()).unwrap_or(i128::MAX))));
        }
        match &self.expiry_watch {
            None => h.update(";expiry=off"),
            Some(t) => h.update(format!(";expiry={:?}", t.iter().map(Duration::as_secs).collect::<Vec<_>>())),
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// The next instant the chain must be asked about an asset with these facts: `now` when it
/// is due now, the instant it becomes due otherwise, `None` while it waits for an operator
/// or for a change (dead, unroutable). Every policy of the chain is monotone in time (a
/// `NotDue(Some(t))` stays so until `t` and is `Due` from `t`), so this is exact.
pub fn next_due_at(facts: &Facts, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match decide(facts, now) {
        Decision::Due(_) => Some(now),
        Decision::NotDue(at) => at,
    }
}

/// The earlier of two optional instants (`None` is "never").
pub fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a stored value disagrees with the policy: it would miss or delay a decision
/// (stored later than the computed time, or never where a time exists), or it names a
/// future time the policy does not. A stored time at or before `now` is only a request to
/// decide now, never a disagreement.
pub fn disagrees(stored: Option<DateTime<Utc>>, computed: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    match (stored, computed) {
        (Some(s), _) if s <= now => false,
        (s, c) => s != c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DueReason, SuggestedWindow};
    use certfleet_shared::db::entity::asset::AssetState;
    use chrono::{Duration as D, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn facts(state: AssetState) -> Facts {
        Facts { state, lease_until: None, not_before: None, not_after: None, renew_before: None, suggested: None }
    }

    /// Every case of the policy tests: the chain says Due exactly from `next_due_at` on,
    /// probed at instants before, at and after it.
    #[test]
    fn next_due_at_matches_the_chain_for_every_policy_case() {
        let mut cases = vec![facts(AssetState::Due), facts(AssetState::Ok), facts(AssetState::Dead)];
        cases.push(facts(AssetState::Unroutable));
        let mut f = facts(AssetState::Ok);
        f.not_before = Some(now() - D::days(1));
        f.not_after = Some(now() + D::days(2));
        cases.push(f);
        let mut f = facts(AssetState::Ok);
        f.not_before = Some(now() - D::days(80));
        f.not_after = Some(now() + D::days(10));
        cases.push(f);
        f.renew_before = Some(Duration::from_secs(7 * 86_400));
        cases.push(f);
        let mut f = facts(AssetState::Due);
        f.not_after = Some(now() + D::days(31));
        cases.push(f);
        f.not_after = Some(now() + D::days(29));
        cases.push(f);
        let mut f = facts(AssetState::InFlight);
        f.lease_until = Some(now() + D::minutes(5));
        cases.push(f);
        f.lease_until = None;
        cases.push(f);
        let mut f = facts(AssetState::Failed);
        f.lease_until = Some(now() + D::minutes(15));
        cases.push(f);
        let mut f = facts(AssetState::Ok);
        f.not_before = Some(now() - D::days(60));
        f.not_after = Some(now() + D::days(30));
        f.suggested = Some(SuggestedWindow { start: now() + D::days(2), end: now() + D::days(4), seed: 1 << 63 });
        cases.push(f);
        f.suggested = Some(SuggestedWindow { start: now() - D::days(4), end: now() - D::days(2), seed: 7 });
        cases.push(f);

        for (i, f) in cases.iter().enumerate() {
            let next = next_due_at(f, now());
            let probes = [D::zero(), D::seconds(1), D::hours(1), D::days(1), D::days(3), D::days(40), D::days(400)];
            for p in probes {
                let t = now() + p;
                let due = matches!(decide(f, t), Decision::Due(_));
                assert_eq!(due, next.is_some_and(|n| t >= n), "case {i} at +{p}: next {next:?}");
            }
            // Computing later gives the same instant while it is still ahead.
            if let Some(n) = next.filter(|n| *n > now()) {
                assert_eq!(next_due_at(f, n - D::seconds(1)), Some(n), "case {i}");
            }
        }
        assert_eq!(decide(&cases[0], now()), Decision::Due(DueReason::UnknownExpiry));
    }

    #[test]
    fn stored_times_at_or_before_now_are_requests_not_disagreements() {
        let (n, later) = (now(), now() + D::days(3));
        assert!(!disagrees(Some(n - D::hours(1)), Some(later), n));
        assert!(!disagrees(Some(later), Some(later), n));
        assert!(!disagrees(None, None, n));
        assert!(disagrees(Some(later + D::days(1)), Some(later), n), "stored later would miss it");
        assert!(disagrees(None, Some(later), n), "never would miss it");
        assert!(disagrees(Some(later), None, n));
    }

    #[test]
    fn the_fingerprint_follows_the_config_inputs() {
        let config = Config::default();
        let a = PolicyInputs::of(&config);
        assert_eq!(a.fingerprint(), PolicyInputs::of(&config).fingerprint());
        let mut b = a.clone();
        b.renew_before.insert("internal".into(), Some(Duration::from_secs(3600)));
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = a.clone();
        c.failed_retry_after = Duration::from_secs(1);
        assert_ne!(a.fingerprint(), c.fingerprint());
        let mut d = a.clone();
        d.expiry_watch = Some(vec![Duration::from_secs(30 * 86_400)]);
        assert_ne!(a.fingerprint(), d.fingerprint(), "turning the expiry watch on");
        let mut e = d.clone();
        e.expiry_watch = Some(vec![Duration::from_secs(15 * 86_400)]);
        assert_ne!(d.fingerprint(), e.fingerprint(), "another threshold");
        let mut f = a.clone();
        f.expiry_watch = Some(Vec::new());
        assert_ne!(a.fingerprint(), f.fingerprint(), "expired only");
    }
}
