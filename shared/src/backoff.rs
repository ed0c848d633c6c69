//! Exponential backoff with jitter, and the retry tiers it maps onto.
//!
//! Delayed retries ride on per-driver TTL queues (`certfleet.retry.<driver>.<tier>`), since
//! RabbitMQ 3.10 has no delayed delivery. A delay is served by the smallest tier at least as
//! long; the message's own `expiration` carries the jittered value within that tier.

use rand::Rng;
use std::time::Duration;

/// The TTL of each retry tier, shortest first. Changing these changes queue arguments, which
/// RabbitMQ refuses for existing queues: add new tiers rather than editing old ones.
pub const RETRY_TIERS: &[Duration] = &[
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];

/// Name suffix of a tier, for example `5s` or `2m`.
pub fn tier_label(tier: Duration) -> String {
    let secs = tier.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// The tier that serves `delay`: the smallest one at least as long, or the longest.
pub fn tier_for(delay: Duration) -> Duration {
    RETRY_TIERS.iter().copied().find(|t| *t >= delay).unwrap_or(RETRY_TIERS[RETRY_TIERS.len() - 1])
}

/// Exponential backoff: `base * 2^(attempt-1)`, capped at `max`, with "equal jitter"
/// (a uniform value in the upper half), so retries of many jobs do not arrive together.
pub fn delay_for_attempt(attempt: u32, base: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let exp = attempt.saturating_sub(1).min(31);
    let raw = base.saturating_mul(1u32 << exp).min(max);
    let half = raw / 2;
    let jitter_ms = rng.random_range(0..=half.as_millis().min(u128::from(u64::MAX)) as u64);
    half + Duration::from_millis(jitter_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_grow_exponentially_within_jitter_bounds_and_cap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempt in 1..=10 {
            let raw = base.saturating_mul(1 << (attempt - 1)).min(max);
            for _ in 0..50 {
                let d = delay_for_attempt(attempt, base, max, &mut rng);
                assert!(d >= raw / 2 && d <= raw, "attempt {attempt}: {d:?} outside [{:?}, {raw:?}]", raw / 2);
            }
        }
        assert!(delay_for_attempt(1000, base, max, &mut rng) <= max);
    }

    #[test]
    fn tiers_cover_delays_and_have_stable_labels() {
        assert_eq!(tier_for(Duration::from_millis(300)), Duration::from_secs(1));
        assert_eq!(tier_for(Duration::from_secs(6)), Duration::from_secs(30));
        assert_eq!(tier_for(Duration::from_secs(86_400)), Duration::from_secs(3600));
        let labels: Vec<_> = RETRY_TIERS.iter().map(|t| tier_label(*t)).collect();
        assert_eq!(labels, ["1s", "5s", "30s", "2m", "10m", "1h"]);
    }
}
