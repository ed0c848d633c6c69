//! The Overview's fleet counts, kept in memory and recounted when stale, so that a page load
//! costs nothing at any fleet size while the counts stay close to the inventory.
//!
//! Counting visits every index entry of the fleet (400 ms at 1,000,000 assets on PostgreSQL).
//! A count stays fresh for [`AGE_FACTOR`] times what it took, between [`MIN_AGE`] and
//! [`MAX_AGE`], so recounting costs at most 1/20 of one connection. A stale count that
//! took longer than [`SYNC_LIMIT`] is shown while one recount runs in the background;
//! a quick one (a small fleet) is recounted before the page is drawn, so a small fleet's
//! numbers are always current. The page says when the numbers were counted.

use certfleet_shared::db::DbError;
use certfleet_shared::db::overview::{self, Counts};
use chrono::Utc;
use sea_orm::DatabaseConnection;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A count stays fresh for this many times what it took.
pub const AGE_FACTOR: u32 = 20;
/// The shortest freshness.
pub const MIN_AGE: Duration = Duration::from_millis(250);
/// The longest freshness.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// A stale count that took longer than this is shown while it is recounted in the background.
pub const SYNC_LIMIT: Duration = Duration::from_millis(100);
/// A count older than this is never shown: the page waits for a new one.
pub const MAX_STALE: Duration = Duration::from_secs(600);

/// One count and how it was made.
struct Counted {
    counts: Arc<Counts>,
    /// When it was made.
    made: Instant,
    /// How long it took.
    took: Duration,
}

impl Counted {
    fn fresh(&self, now: Instant) -> bool {
        now.duration_since(self.made) < (self.took * AGE_FACTOR).clamp(MIN_AGE, MAX_AGE)
    }
}

/// The shared counts of one API process. Cheap to clone.
#[derive(Clone, Default)]
pub struct Summary {
    current: Arc<RwLock<Option<Arc<Counted>>>>,
    /// Held by the one recount running, so that concurrent loads do not all count.
    recount: Arc<Mutex<()>>,
}

impl Summary {
    /// The counts to show now (see the module's doc for when they are recounted).
    pub async fn get(&self, db: &DatabaseConnection) -> Result<Arc<Counts>, DbError> {
        let now = Instant::now();
        if let Some(c) = self.current() {
            if c.fresh(now) {
                return Ok(c.counts.clone());
            }
            if c.took > SYNC_LIMIT && now.duration_since(c.made) < MAX_STALE {
                self.recount_in_background(db.clone());
                return Ok(c.counts.clone());
            }
        }
        self.recount(db).await
    }

    /// Counts once in the background at start-up, so that on a large fleet the first
    /// Overview a user opens does not pay for the count (a load that comes sooner waits
    /// for this count only). A quick count is not kept: a small fleet's first page counts
    /// afresh, as every later stale one does.
    pub fn warm(&self, db: &DatabaseConnection) {
        let Ok(turn) = self.recount.clone().try_lock_owned() else { return };
        let (this, db) = (self.clone(), db.clone());
        tokio::spawn(async move {
            let _turn = turn;
            let made = Instant::now();
            match overview::counts(&db, Utc::now()).await {
                Ok(counts) if made.elapsed() > SYNC_LIMIT => this.store(Arc::new(counts), made),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "counting the dashboard's overview at start failed"),
            }
        });
    }

    fn store(&self, counts: Arc<Counts>, made: Instant) {
        let counted = Arc::new(Counted { counts, made, took: made.elapsed() });
        match self.current.write() {
            Ok(mut slot) => *slot = Some(counted),
            Err(poisoned) => *poisoned.into_inner() = Some(counted),
        }
    }

    fn current(&self) -> Option<Arc<Counted>> {
        self.current.read().map(|c| c.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Counts now, unless a recount that ran while this one waited its turn is fresh.
    async fn recount(&self, db: &DatabaseConnection) -> Result<Arc<Counts>, DbError> {
        let _turn = self.recount.lock().await;
        self.count_holding_turn(db).await
    }

    async fn count_holding_turn(&self, db: &DatabaseConnection) -> Result<Arc<Counts>, DbError> {
        if let Some(c) = self.current().filter(|c| c.fresh(Instant::now())) {
            return Ok(c.counts.clone());
        }
        let made = Instant::now();
        let counts = Arc::new(overview::counts(db, Utc::now()).await?);
        self.store(counts.clone(), made);
        Ok(counts)
    }

    /// Starts one background recount, unless one is running.
    fn recount_in_background(&self, db: DatabaseConnection) {
        let Ok(turn) = self.recount.clone().try_lock_owned() else { return };
        let this = self.clone();
        tokio::spawn(async move {
            let _turn = turn;
            if let Err(e) = this.count_holding_turn(&db).await {
                tracing::warn!(error = %e, "recounting the dashboard's overview failed; the last counts stay shown");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(age: Duration, took: Duration) -> Counted {
        let now = Instant::now();
        let counts = Counts {
            at: Utc::now(),
            by_state: Default::default(),
            total: 0,
            expiring: vec![],
            expired: 0,
            last_day: Default::default(),
            histogram: vec![],
        };
        Counted { counts: Arc::new(counts), made: now.checked_sub(age).unwrap_or(now), took }
    }

    #[test]
    fn freshness_follows_the_cost_of_counting() {
        let now = Instant::now();
        // 400 ms to count: fresh for 8 s.
        assert!(counted(Duration::from_secs(7), Duration::from_millis(400)).fresh(now));
        assert!(!counted(Duration::from_secs(9), Duration::from_millis(400)).fresh(now));
        // 2 ms to count: fresh for the minimum only.
        assert!(!counted(Duration::from_millis(300), Duration::from_millis(2)).fresh(now));
        // 10 s to count: fresh for the maximum only.
        assert!(!counted(Duration::from_secs(61), Duration::from_secs(10)).fresh(now));
        assert!(counted(Duration::from_secs(59), Duration::from_secs(10)).fresh(now));
    }

    /// Puts `counted` in place as the current count, and returns its counts.
    fn place(summary: &Summary, counted: Counted) -> Arc<Counts> {
        let counts = counted.counts.clone();
        *summary.current.write().unwrap() = Some(Arc::new(counted));
        counts
    }

    // The counts' ages are set, not waited for: a test that slept past `MIN_AGE` and
    // relied on the work in between taking less failed on a loaded machine.
    #[tokio::test]
    async fn a_quick_count_is_reused_while_fresh_then_redone() {
        let db = certfleet_shared::db::connect("sqlite::memory:", Duration::from_secs(10)).await.unwrap();
        let summary = Summary::default();
        assert_eq!(summary.get(&db).await.unwrap().total, 0, "no count yet: counted at once");
        let input = certfleet_shared::db::assets::AssetInput {
            system_name: "one".into(),
            common_name: "one.test".into(),
            certificate_authority: "internal".into(),
            host_platform: "local".into(),
            ..Default::default()
        };
        certfleet_shared::db::assets::import(&db, &[input], &["internal"]).await.unwrap();
        // Made just now, quick: fresh for MIN_AGE, so shown as it is.
        let fresh = place(&summary, counted(Duration::ZERO, Duration::from_millis(1)));
        assert!(Arc::ptr_eq(&fresh, &summary.get(&db).await.unwrap()), "fresh: the same counts, not counted again");
        // The same quick count, older than MIN_AGE: counted again before it is shown.
        place(&summary, counted(MIN_AGE + Duration::from_millis(50), Duration::from_millis(1)));
        assert_eq!(summary.get(&db).await.unwrap().total, 1, "a quick count is redone before it is shown once stale");
        // A slow count gone stale: shown while one recount runs in the background.
        let slow = place(&summary, counted(Duration::from_secs(61), Duration::from_secs(1)));
        assert!(Arc::ptr_eq(&slow, &summary.get(&db).await.unwrap()), "stale but slow: shown, recounted behind");
    }
}
