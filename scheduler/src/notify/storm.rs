//! Storm control, as plain state with an injected clock: per channel and event kind, the
//! first `digest_after` events of a window are delivered as they come; the rest of the
//! window are held and summarized in one digest when it closes. A CA outage that kills
//! 500 jobs gives `digest_after` messages and one digest per channel, not 500.

use certfleet_proto::{Digest, EventKind, Notification, ReasonCount};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Assets named in a digest at most.
pub const DIGEST_ASSETS: usize = 10;
/// Reasons listed in a digest at most.
pub const DIGEST_REASONS: usize = 5;

struct Bucket<T> {
    opened: Instant,
    opened_at: DateTime<Utc>,
    delivered: u32,
    held: Vec<(Notification, T)>,
}

/// A closed window's held events.
pub struct Closed<T> {
    /// The digest message to send in their place.
    pub digest: Notification,
    /// What was held (delivery handles, to settle once the digest is queued).
    pub held: Vec<T>,
}

/// The windows of every (channel, kind).
pub struct Storm<T> {
    after: u32,
    window: Duration,
    buckets: HashMap<(String, EventKind), Bucket<T>>,
}

impl<T> Storm<T> {
    /// `after` events per window are delivered; the rest are digested.
    pub fn new(after: u32, window: Duration) -> Self {
        Self { after, window, buckets: HashMap::new() }
    }

    /// Admits `n` at `now` (`wall` is the same instant on the wall clock): gives `handle`
    /// back when the event is to be delivered now, keeps it (until the window's digest)
    /// when it is held.
    pub fn admit(&mut self, n: &Notification, handle: T, now: Instant, wall: DateTime<Utc>) -> Option<T> {
        let bucket = self.buckets.entry((n.channel.clone(), n.event)).or_insert_with(|| Bucket {
            opened: now,
            opened_at: wall,
            delivered: 0,
            held: Vec::new(),
        });
        if bucket.delivered < self.after {
            bucket.delivered += 1;
            return Some(handle);
        }
        bucket.held.push((n.clone(), handle));
        None
    }

    /// When the next window closes, if one is open.
    pub fn next_close(&self) -> Option<Instant> {
        self.buckets.values().map(|b| b.opened + self.window).min()
    }

    /// Closes every window that ended by `now`; returns the digests to send.
    pub fn close_due(&mut self, now: Instant, wall: DateTime<Utc>) -> Vec<Closed<T>> {
        let due: Vec<(String, EventKind)> =
            self.buckets.iter().filter(|(_, b)| now >= b.opened + self.window).map(|(k, _)| k.clone()).collect();
        let mut out = Vec::new();
        for key in due {
            let Some(bucket) = self.buckets.remove(&key) else { continue };
            if bucket.held.is_empty() {
                continue;
            }
            out.push(digest_of(&key.0, key.1, bucket, wall));
        }
        out
    }

    /// Events held right now.
    pub fn held(&self) -> usize {
        self.buckets.values().map(|b| b.held.len()).sum()
    }
}

fn digest_of<T>(channel: &str, kind: EventKind, bucket: Bucket<T>, wall: DateTime<Utc>) -> Closed<T> {
    let mut reasons: HashMap<String, u64> = HashMap::new();
    let mut assets = Vec::new();
    for (n, _) in &bucket.held {
        *reasons.entry(n.reason.clone().unwrap_or_else(|| "-".to_owned())).or_default() += 1;
        if assets.len() < DIGEST_ASSETS && n.asset.is_some() {
            assets.push(n.system_name().to_owned());
        }
    }
    let mut top: Vec<ReasonCount> = reasons.into_iter().map(|(reason, count)| ReasonCount { reason, count }).collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    top.truncate(DIGEST_REASONS);
    let mut digest = Notification::new(channel, kind, None, wall);
    digest.severity = bucket.held.iter().map(|(n, _)| n.severity).max().unwrap_or(digest.severity);
    digest.digest =
        Some(Digest { count: bucket.held.len() as u64, window_start: bucket.opened_at, top_reasons: top, assets });
    Closed { digest, held: bucket.held.into_iter().map(|(_, h)| h).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize, channel: &str) -> Notification {
        let mut n = Notification::new(channel, EventKind::RotationDead, None, Utc::now());
        n.reason = Some(if i.is_multiple_of(3) { "CA down".into() } else { "timeout".into() });
        n.asset = Some(certfleet_proto::AssetSummary {
            asset_id: certfleet_proto::AssetId(i as i64),
            system_name: format!("a-{i:03}"),
            common_name: "x".into(),
            ip_address: None,
            host_platform: "local".into(),
            os_version: None,
            data_center: None,
            device_model: None,
            certificate_authority: "internal".into(),
            certificate_expiration: None,
        });
        n
    }

    #[test]
    fn a_storm_becomes_one_digest_per_channel() {
        let mut s = Storm::new(2, Duration::from_secs(60));
        let t = Instant::now();
        let wall = Utc::now();
        let mut delivered = 0;
        for i in 0..300 {
            for ch in ["slack", "hook"] {
                if s.admit(&event(i, ch), i, t + Duration::from_millis(i as u64), wall).is_some() {
                    delivered += 1;
                }
            }
        }
        assert_eq!(delivered, 4, "two per channel go out at once");
        assert_eq!(s.held(), 596);
        assert!(s.close_due(t + Duration::from_secs(59), wall).is_empty());
        let closed = s.close_due(t + Duration::from_secs(60), wall);
        assert_eq!(closed.len(), 2);
        for c in &closed {
            let d = c.digest.digest.as_ref().unwrap();
            assert_eq!((d.count, c.held.len()), (298, 298));
            assert_eq!(d.assets.len(), DIGEST_ASSETS);
            assert_eq!(d.assets[0], "a-002");
            assert_eq!(d.top_reasons[0], ReasonCount { reason: "timeout".into(), count: 199 });
            assert_eq!(d.top_reasons[1].count, 99);
        }
        assert_eq!(s.next_close(), None);
        // A quiet window sends no digest.
        assert!(s.admit(&event(1, "slack"), 1, t + Duration::from_secs(61), wall).is_some());
        assert!(s.close_due(t + Duration::from_secs(200), wall).is_empty());
    }
}
